"""Property-based: whatever a client sends as annotations, the validators answer with a dataset or an
InvalidArgument (DatasetValidationError) naming the problems, never with another exception."""

from __future__ import annotations

import copy
import io
import json
import math
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from artdet.detector.dataset import (DatasetValidationError, DetectionDataset, check_coco_structure, load_coco,
                                     parse_json)
from artdet.detector.errors import InvalidArgument
from artdet.detector.voc import voc_files_to_coco, voc_to_coco

# ARTDET_PROPERTY_EXAMPLES=5000 for a longer hunt
SETTINGS = settings(max_examples=int(os.environ.get("ARTDET_PROPERTY_EXAMPLES", 200)), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
IMAGE_NAMES = ["a.png", "sub/b.png", "c.png"]  # c.png is not a file


@pytest.fixture(scope="module")
def image_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("images")
    for name, size in zip(IMAGE_NAMES[:2], [(8, 6), (5, 9)]):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size, (10, 200, 10)).save(root / name)
    (root / "junk.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (root / "folder.png").mkdir()
    return root


VALID = {
    "categories": [{"id": 1, "name": "cat"}, {"id": 7, "name": "dog", "supercategory": "animal"}],
    "images": [{"id": 1, "file_name": "a.png", "width": 8, "height": 6}, {"id": 2, "file_name": "sub/b.png"}],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 4, 3], "iscrowd": 0},
        {"id": 2, "image_id": 2, "category_id": 7, "bbox": [0.5, 0.5, 2.25, 3.0], "area": 1.0},
    ],
}

# scalars a client may send, the awkward ones over-represented
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=-3, max_value=12),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([10 ** 400, -(10 ** 400), 1e308, 0.5, -0.0]),
    st.text(max_size=12), st.sampled_from(["", ".", "..", "../a.png", "/etc/passwd", "a\x00.png", "a" * 300,
                                           "junk.png", "folder.png", *IMAGE_NAMES, "\ud800.png", "a.png/b.png"]),
)
JSON_LIKE = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=5), st.dictionaries(st.sampled_from(["id", "name", "file_name", "width", "height",
                                                                   "image_id", "category_id", "bbox", "iscrowd",
                                                                   "images", "annotations", "categories"])
                                                 | st.text(max_size=5), inner, max_size=6)), max_leaves=25)


REFUSED = "refused"


def _judge(call):
    """The call's result, or REFUSED when it raised InvalidArgument; any other exception fails the test."""
    try:
        result = call()
    except InvalidArgument as exc:
        assert str(exc)  # a message the client can read
        if isinstance(exc, DatasetValidationError):
            assert exc.problems and all(p.where and p.message for p in exc.problems)
        return REFUSED
    return result


def _all_modes(coco, image_root):
    if isinstance(coco, str):  # load_coco takes a string for a file's path
        return [_judge(lambda: check_coco_structure(coco))]
    results = [
        _judge(lambda: check_coco_structure(coco)),
        _judge(lambda: load_coco(coco, image_root)),
        _judge(lambda: load_coco(coco, image_root, check_files=False)),
        _judge(lambda: load_coco(coco, image_root, class_names=["dog", "cat", "bird"])),
    ]
    if any(r is not REFUSED for r in results[1:]):  # the early check refuses nothing the full check accepts
        assert results[0] is None, coco
    dataset = results[1]
    if dataset is not REFUSED:
        assert isinstance(dataset, DetectionDataset)
        dataset.statistics()
        json.dumps(dataset.to_coco())
        for box in dataset.all_boxes():
            x1, y1, x2, y2 = box.box
            assert 0 <= x1 < x2 and 0 <= y1 < y2 and all(map(math.isfinite, box.box))
    return results


@SETTINGS
@given(coco=JSON_LIKE)
def test_any_json_like_value(image_root, coco):
    _all_modes(coco, image_root)


@SETTINGS
@given(images=JSON_LIKE, annotations=JSON_LIKE, categories=JSON_LIKE)
def test_any_top_level_fields(image_root, images, annotations, categories):
    _all_modes({"images": images, "annotations": annotations, "categories": categories}, image_root)


def _paths(value, prefix=()):
    """Every (container path, key) inside a JSON-like value."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield prefix + (key,)
            yield from _paths(item, prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield prefix + (index,)
            yield from _paths(item, prefix + (index,))


@st.composite
def mutated_datasets(draw):
    coco = copy.deepcopy(VALID)
    for _ in range(draw(st.integers(1, 4))):
        paths = list(_paths(coco))
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = coco
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["replace", "delete", "duplicate", "swap-type"]))
        key = path[-1]
        if action == "replace":
            parent[key] = draw(JSON_LIKE)
        elif action == "delete":
            del parent[key]
        elif action == "duplicate" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[key]))
        else:
            value = parent[key]
            parent[key] = [value] if not isinstance(value, list) else {"value": value}
    return coco


@SETTINGS
@given(coco=mutated_datasets())
def test_mutations_of_a_valid_dataset(image_root, coco):
    _all_modes(coco, image_root)


def test_the_unmutated_dataset_is_valid(image_root):
    structure, with_files, declared_sizes, model_classes = _all_modes(VALID, image_root)
    assert structure is None and declared_sizes is REFUSED  # image 2 declares no size
    assert isinstance(with_files, DetectionDataset) and isinstance(model_classes, DetectionDataset)
    assert load_coco(VALID, image_root).statistics()["boxes"] == 2


@SETTINGS
@given(text=st.one_of(st.binary(max_size=60), st.text(max_size=60).map(str.encode),
                      st.builds(lambda v: json.dumps(v).encode(), JSON_LIKE.filter(lambda v: not _has_surrogate(v)))))
def test_any_annotation_bytes(image_root, text):
    parsed = _judge(lambda: parse_json(text, "header.annotation_files[0]"))
    if parsed is not REFUSED:
        _all_modes(parsed, image_root)


def _has_surrogate(value) -> bool:
    return "\\ud" in json.dumps(value)


# -- Pascal VOC -------------------------------------------------------------------------------------

NUMBERS = st.one_of(st.sampled_from(["0", "1", "8", "6", "2.5", "-1", "inf", "-inf", "nan", "1e999", "", " 3 ",
                                     "x", "9" * 5000, "0x10"]),
                    st.integers(-5, 20).map(str), st.text(max_size=6))
TAGS = ["annotation", "filename", "size", "width", "height", "object", "name", "bndbox", "xmin", "ymin", "xmax",
        "ymax", "difficult", "folder"]


def _escape(text: str) -> str:
    return "".join(c for c in text if c in "\t\n\r" or (" " <= c and not 0xD800 <= ord(c) <= 0xDFFF)
                   and c not in "\ufffe\uffff").replace("&", "&amp;").replace("<", "&lt;")


@st.composite
def voc_element(draw, depth=0):
    tag = draw(st.sampled_from(TAGS))
    text = draw(st.one_of(NUMBERS, st.sampled_from(IMAGE_NAMES + ["", "../x.png", "cat", "dog"])))
    children = [] if depth >= 3 else draw(st.lists(voc_element(depth + 1), max_size=4))
    return f"<{tag}>{_escape(text)}{''.join(children)}</{tag}>"


def _voc(file_name="a.png", width="8", height="6", box=("2", "2", "5", "4"), name="cat", difficult="0"):
    return (f"<annotation><filename>{file_name}</filename><size><width>{width}</width><height>{height}</height>"
            f"</size><object><name>{name}</name><difficult>{difficult}</difficult><bndbox><xmin>{box[0]}</xmin>"
            f"<ymin>{box[1]}</ymin><xmax>{box[2]}</xmax><ymax>{box[3]}</ymax></bndbox></object></annotation>")


@st.composite
def structured_voc(draw):
    field = st.one_of(NUMBERS.map(_escape), st.sampled_from(IMAGE_NAMES))
    return _voc(draw(st.one_of(st.sampled_from(IMAGE_NAMES), field)), draw(field), draw(field),
                tuple(draw(field) for _ in range(4)), draw(field), draw(field))


@st.composite
def mutated_voc(draw):
    text = draw(structured_voc())
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(text)))
        cut = draw(st.integers(0, 8))
        text = text[:at] + draw(st.sampled_from(["", "<", ">", "&", "</a>", "<object>", "&amp;", "\x00", "é"])) \
            + text[at + cut:]
    return text


XML_FILES = st.lists(st.tuples(
    st.one_of(st.sampled_from(["a.xml", "b.xml", "sub/c.xml", "a.xml/d.xml", "", "../e.xml", "f.txt",
                               "a" * 300 + ".xml", "./a.xml", "g\x00.xml"]), st.text(max_size=8)),
    st.one_of(structured_voc(), mutated_voc(), voc_element(), st.text(max_size=40)).map(
        lambda t: t.encode("utf-8", "surrogatepass")) | st.binary(max_size=40)),
    min_size=1, max_size=4)


@SETTINGS
@given(files=XML_FILES)
def test_any_voc_upload(image_root, files):
    coco = _judge(lambda: voc_files_to_coco(files, "header.annotation_files"))
    if coco is not REFUSED:
        json.dumps(coco)
        _all_modes(coco, image_root)


@SETTINGS
@given(xml=st.one_of(structured_voc(), mutated_voc(), voc_element()))
def test_any_voc_folder(tmp_path_factory, image_root, xml):
    folder = tmp_path_factory.mktemp("voc")
    (folder / "x.xml").write_text(xml, encoding="utf-8", errors="surrogatepass")
    result = _judge(lambda: voc_to_coco(folder, image_root))
    if result is not REFUSED:
        coco, root = result
        assert root == image_root
        _all_modes(coco, image_root)


def test_a_plain_voc_file_still_reads(image_root):
    coco = voc_files_to_coco([("a.xml", _voc().encode())], "voc")
    assert load_coco(coco, image_root).boxes(1)[0].box == (1.0, 1.0, 5.0, 4.0)


def test_png_fixture_is_tiny():
    buffer = io.BytesIO()
    Image.new("RGB", (8, 6)).save(buffer, "PNG")
    assert len(buffer.getvalue()) < 200
