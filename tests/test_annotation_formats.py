"""Label Studio and CVAT exports, written here as the tools document them, read into the same dataset as the
equivalent COCO; their problems named by task or image; zips laid out as the tools write them."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from artdet.detector.annotation_formats import load_annotations, opened, read_annotations
from artdet.detector.cvat import cvat_xml, cvat_xml_to_coco
from artdet.detector.dataset import DatasetValidationError, load_coco
from artdet.detector.errors import InvalidArgument
from artdet.detector.local_images import LocalImages, original_name
from tests.conftest import artdet

# (file, width, height, [(label, x, y, w, h)]): the ground truth every format below encodes
IMAGES = [("madonna.jpg", 200, 100, [("person", 20.0, 10.0, 50.0, 60.0), ("horse", 100.0, 30.0, 80.0, 40.0)]),
          ("still life.png", 120, 160, []),
          ("rider.jpg", 90, 90, [("person", 0.0, 0.0, 45.0, 90.0)])]
CLASSES = ["horse", "person"]


def _write_images(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for index, (name, width, height, _) in enumerate(IMAGES):
        Image.fromarray(np.full((height, width, 3), 40 * index, np.uint8)).save(root / name)


def _coco() -> dict:
    coco = {"images": [], "annotations": [], "categories": [{"id": i + 1, "name": n} for i, n in enumerate(CLASSES)]}
    for image_id, (name, width, height, boxes) in enumerate(IMAGES, start=1):
        coco["images"].append({"id": image_id, "file_name": name, "width": width, "height": height})
        for label, x, y, w, h in boxes:
            coco["annotations"].append({"id": len(coco["annotations"]) + 1, "image_id": image_id,
                                        "category_id": CLASSES.index(label) + 1, "bbox": [x, y, w, h],
                                        "area": w * h, "iscrowd": 0})
    return coco


def _rectangle(label, x, y, w, h, width, height, region_id):
    """A Label Studio rectangle result: percent of the image, with its natural size beside it."""
    return {"id": region_id, "type": "rectanglelabels", "from_name": "label", "to_name": "image",
            "original_width": width, "original_height": height, "image_rotation": 0, "origin": "manual",
            "value": {"x": 100 * x / width, "y": 100 * y / height, "width": 100 * w / width,
                      "height": 100 * h / height, "rotation": 0, "rectanglelabels": [label]}}


def _label_studio_json() -> list:
    tasks = []
    for task_id, (name, width, height, boxes) in enumerate(IMAGES, start=1):
        result = [_rectangle(*box, width, height, f"r{task_id}{i}") for i, box in enumerate(boxes)]
        annotations = [{"id": 10 * task_id, "result": result, "was_cancelled": False, "ground_truth": False,
                        "created_at": "2026-11-20T10:00:00.000000Z", "updated_at": "2026-11-20T10:00:00.000000Z"}]
        if task_id == 3:  # an older annotation and a skipped one: the latest real one counts
            annotations = [{"id": 1, "result": [_rectangle("horse", 1, 1, 5, 5, width, height, "old")],
                            "was_cancelled": False, "updated_at": "2026-11-01T10:00:00.000000Z"},
                           {"id": 99, "result": [], "was_cancelled": True,
                            "updated_at": "2026-11-24T10:00:00.000000Z"}] + annotations
        tasks.append({"id": task_id, "data": {"image": f"/data/upload/7/{task_id:04x}abcd-{name}"},
                      "annotations": annotations, "predictions": [], "file_upload": f"{task_id:04x}abcd-{name}"})
    # a task nobody labelled yet: not an image without objects
    tasks.append({"id": 4, "data": {"image": "/data/upload/7/0000ffff-unlabelled.jpg"}, "annotations": [],
                  "predictions": []})
    return tasks


def _label_studio_min() -> list:
    items = []
    for task_id, (name, width, height, boxes) in enumerate(IMAGES, start=1):
        item = {"image": f"/data/upload/7/{task_id:04x}abcd-{name}", "id": task_id, "annotator": 1,
                "annotation_id": 10 * task_id, "created_at": "2026-11-20T10:00:00Z", "lead_time": 3.2}
        if boxes:
            item["label"] = [{**_rectangle(*box, width, height, "r")["value"], "original_width": width,
                              "original_height": height} for box in boxes]
        items.append(item)
    return items


def _same_as_coco(dataset, tmp_path):
    expected = load_coco(_coco(), tmp_path / "images").to_coco()
    got = dataset.to_coco()
    assert got["categories"] == expected["categories"]
    assert [(i["file_name"], i["width"], i["height"]) for i in got["images"]] == \
        [(i["file_name"], i["width"], i["height"]) for i in expected["images"]]
    assert len(got["annotations"]) == len(expected["annotations"])
    for a, b in zip(got["annotations"], expected["annotations"]):
        assert (a["image_id"], a["category_id"]) == (b["image_id"], b["category_id"])
        assert a["bbox"] == pytest.approx(b["bbox"], abs=1e-6)


@pytest.fixture
def images(tmp_path) -> Path:
    _write_images(tmp_path / "images")
    return tmp_path / "images"


def test_label_studio_json_gives_the_same_dataset_as_coco(tmp_path, images):
    export = tmp_path / "project-7-at-2026-11-25.json"
    export.write_text(json.dumps(_label_studio_json()))
    read = read_annotations(export, images)
    assert read.format == "label-studio" and read.notes == ["1 task(s) without an annotation left out "
                                                            "(not labelled yet)"]
    _same_as_coco(load_coco(read.coco, read.image_root), tmp_path)


def test_label_studio_json_min_gives_the_same_dataset_as_coco(tmp_path, images):
    export = tmp_path / "min.json"
    export.write_text(json.dumps(_label_studio_min()))
    assert read_annotations(export, images).format == "label-studio-min"
    _same_as_coco(load_annotations(export, images), tmp_path)


def test_label_studio_coco_export_matches_uploads_by_original_name(tmp_path, images):
    coco = _coco()
    for entry in coco["images"]:  # as Label Studio's COCO export names uploaded files
        entry["file_name"] = f"images/{entry['id']:04x}abcd-{entry['file_name']}"
    export = tmp_path / "result.json"
    export.write_text(json.dumps(coco))
    read = read_annotations(export, images)
    assert read.format == "coco" and read.renamed
    _same_as_coco(load_coco(read.coco, read.image_root), tmp_path)


def test_image_references_label_studio_writes(tmp_path, images):
    (images / "sub").mkdir()
    Image.new("RGB", (8, 8)).save(images / "sub" / "rider.jpg")  # a second rider.jpg: by name alone, ambiguous
    local = LocalImages(images)
    assert original_name("/data/upload/3/0a1b2c3d-Saint George.jpg") == "Saint George.jpg"
    assert local.find("/data/upload/3/0a1b2c3d-madonna.jpg") == ("madonna.jpg", None)
    assert local.find("/data/local-files/?d=museum/sub/rider.jpg") == ("sub/rider.jpg", None)  # the longest tail
    assert local.find("https://example.org/collection/still%20life.png?x=1") == ("still life.png", None)
    assert local.find("/data/upload/3/0a1b2c3d-still_life.png") == ("still life.png", None)  # spaces stored as _
    long_name = "the-parents-away-the-oldest-child-takes-care-of-brothers-and-sisters-in-the-absence-of-1854.jpg"
    Image.new("RGB", (8, 8)).save(images / long_name)  # Label Studio keeps the start and adds 7 characters
    local = LocalImages(images)
    assert local.find("/data/upload/3/0a1b2c3d-the-parents-away-the-oldest-child-take_uUGrftd.jpg") == (long_name,
                                                                                                      None)
    found, why = local.find("/data/upload/3/0a1b2c3d-rider.jpg")
    assert found is None and "ambiguous" in why and "2 files" in why
    found, why = local.find("/data/upload/3/0a1b2c3d-missing.jpg")
    assert found is None and "'missing.jpg'" in why and "--images" in why


def test_label_studio_problems_are_named_by_task(tmp_path, images):
    tasks = _label_studio_json()[:3]
    tasks[0]["annotations"][0]["result"][0]["value"]["rotation"] = 30
    tasks[0]["annotations"][0]["result"].append({"type": "polygonlabels", "value": {"points": [[1, 2]]}})
    tasks[1]["data"]["image"] = "/data/upload/7/0002abcd-not-here.jpg"
    del tasks[2]["annotations"][-1]["result"][0]["original_width"]
    export = tmp_path / "bad.json"
    export.write_text(json.dumps(tasks))
    with pytest.raises(DatasetValidationError) as caught:
        read_annotations(export, images)
    message = str(caught.value)
    assert "task 1, region 'r10': a rectangle rotated by 30°" in message
    assert "task 1: polygonlabels regions cannot train a box detector" in message
    assert "task 2: image 'not-here.jpg' is not under the image folder" in message
    assert "task 3: rectangles need one positive original_width and original_height" in message


def _cvat_images_xml() -> bytes:
    return cvat_xml(CLASSES, [(name, width, height, [(label, x, y, x + w, y + h) for label, x, y, w, h in boxes])
                              for name, width, height, boxes in IMAGES])


def test_cvat_for_images_zip_gives_the_same_dataset_as_coco(tmp_path, images):
    export = tmp_path / "task_7_annotations_2026_11_25_cvat for images 1.1.zip"
    with zipfile.ZipFile(export, "w") as archive:  # CVAT's layout: annotations.xml and images/
        archive.writestr("annotations.xml", _cvat_images_xml())
        for path in images.iterdir():
            archive.write(path, f"images/{path.name}")
    with opened(export) as (annotation, root):
        read = read_annotations(annotation, root)
        _same_as_coco(load_coco(read.coco, read.image_root), tmp_path)
    with pytest.raises(InvalidArgument, match="unzip it first"):  # training reads the images later: not from a zip
        load_annotations(export)


def test_cvat_coco_zip_gives_the_same_dataset_as_coco(tmp_path, images):
    coco = _coco()
    for annotation in coco["annotations"]:  # CVAT writes its attributes beside each box
        annotation["attributes"] = {"occluded": False, "rotation": 0.0}
    export = tmp_path / "task_7-coco 1.0.zip"
    with zipfile.ZipFile(export, "w") as archive:
        archive.writestr("annotations/instances_default.json", json.dumps(coco))
        for path in images.iterdir():
            archive.write(path, f"images/{path.name}")
    with opened(export) as (annotation, root):
        read = read_annotations(annotation, root)
        assert annotation.name == "instances_default.json" and root.name == "images"
        _same_as_coco(load_coco(read.coco, read.image_root), tmp_path)


def test_cvat_xml_as_cvat_writes_it(tmp_path):
    """The attributes and elements CVAT 2.x puts in an export: kept where they matter, the rest ignored."""
    xml = b"""<?xml version="1.0" encoding="utf-8"?>
<annotations><version>1.1</version>
  <meta><job><id>3</id><labels>
    <label><name>person</name><color>#fa3253</color><type>any</type><attributes/></label>
    <label><name>horse</name><color>#33ddff</color><type>rectangle</type><attributes/></label>
  </labels></job></meta>
  <image id="0" name="a/one.jpg" width="640" height="480">
    <box label="horse" source="manual" occluded="1" xtl="10.5" ytl="20" xbr="110.5" ybr="220" z_order="0">
      <attribute name="colour">brown</attribute></box>
    <tag label="person" source="manual"></tag>
  </image>
  <image id="1" name="a/two.jpg" width="320" height="240"></image>
</annotations>"""
    coco = cvat_xml_to_coco(xml, "annotations.xml")
    assert coco["categories"] == [{"id": 1, "name": "person"}, {"id": 2, "name": "horse"}]  # the task's order
    assert [(i["file_name"], i["width"], i["height"]) for i in coco["images"]] == [("a/one.jpg", 640, 480),
                                                                                   ("a/two.jpg", 320, 240)]
    assert [(a["image_id"], a["category_id"], a["bbox"]) for a in coco["annotations"]] == [
        (1, 2, [10.5, 20.0, 100.0, 200.0])]


@pytest.mark.parametrize("old, new, expected", [
    (b'xtl="10.5"', b'xtl="ten"', "image '0' ('a/one.jpg'): a <box> needs a label and numeric xtl"),
    (b'z_order="0">', b'z_order="0" rotation="15.0">', "a box rotated by 15°"),
    (b'<tag ', b'<polygon points="1,2;3,4;5,6" label="horse"/><tag ', "<polygon> shapes cannot train"),
    (b'<image id="1" name="a/two.jpg" width="320"', b'<image id="1" name="a/two.jpg" width="-3"',
     "image '1' ('a/two.jpg'): an <image> needs a name and positive width and height"),
    (b"</annotations>", b"<track id='0' label='horse'></track></annotations>", "<track> elements are video"),
    (b"<annotations>", b"<annotations><oops>", "not well-formed XML"),
])
def test_cvat_problems_are_named_by_image(old, new, expected):
    xml = (b'<annotations><version>1.1</version><meta><task><labels><label><name>horse</name></label></labels>'
           b'</task></meta><image id="0" name="a/one.jpg" width="640" height="480"><box label="horse" '
           b'xtl="10.5" ytl="20" xbr="110.5" ybr="220" z_order="0"></box><tag label="horse"/></image>'
           b'<image id="1" name="a/two.jpg" width="320" height="240"></image></annotations>')
    assert xml.count(old) == 1
    with pytest.raises(DatasetValidationError) as caught:
        cvat_xml_to_coco(xml.replace(old, new), "annotations.xml")
    assert expected in str(caught.value)


def test_validate_reads_every_format_and_says_what_it_left_out(tmp_path, images):
    export = tmp_path / "export.json"
    export.write_text(json.dumps(_label_studio_json()))
    result = artdet("validate", str(export), "--images", str(images))
    assert "valid: 3 images (1 without boxes), 3 boxes (horse 1, person 2)" in result.stdout
    assert "1 task(s) without an annotation left out" in result.stderr
    xml_zip = tmp_path / "cvat.zip"
    with zipfile.ZipFile(xml_zip, "w") as archive:
        archive.writestr("annotations.xml", _cvat_images_xml())
        for path in images.iterdir():
            archive.write(path, f"images/{path.name}")
    assert "valid: 3 images (1 without boxes), 3 boxes" in artdet("validate", str(xml_zip)).stdout
    (tmp_path / "bad.zip").write_bytes(b"PK\x03\x04 garbage")
    bad = artdet("validate", str(tmp_path / "bad.zip"), check=False)
    assert bad.returncode != 0 and "bad.zip: not a zip file" in bad.stderr and "Traceback" not in bad.stderr


def test_detect_cvat_writes_a_zip_cvat_imports(overfit_export, tmp_path):
    """Pre-annotations for CVAT: annotations.xml in a zip, the boxes `detect --json` gives, names as in the folder."""
    folder = tmp_path / "photos"
    (folder / "room").mkdir(parents=True)
    for index, record in enumerate(overfit_export["data"].images[:2]):
        (folder / ("room" if index else ".") / record.path.name).write_bytes(record.path.read_bytes())
    out = tmp_path / "pre.zip"
    model = str(overfit_export["path"])
    artdet("detect", str(folder), "--model", model, "--cvat", str(out), "--threshold", "0.3")
    listed = json.loads(artdet("detect", str(folder), "--model", model, "--json",
                               "--threshold", "0.3").stdout)
    with zipfile.ZipFile(out) as archive:
        assert archive.namelist() == ["annotations.xml"]
        coco = cvat_xml_to_coco(archive.read("annotations.xml"), "annotations.xml")
    names = {c["id"]: c["name"] for c in coco["categories"]}
    assert [i["file_name"] for i in coco["images"]] == [row["file"] for row in listed]
    for image, row in zip(coco["images"], listed):
        got = sorted((names[a["category_id"]], *a["bbox"]) for a in coco["annotations"] if a["image_id"] == image["id"])
        want = sorted((d["label"], d["box"][0], d["box"][1], d["box"][2] - d["box"][0], d["box"][3] - d["box"][1])
                      for d in row["detections"])
        assert [g[0] for g in got] == [w[0] for w in want]
        assert np.allclose([g[1:] for g in got], [w[1:] for w in want], atol=0.01)


def test_the_ground_truth_annotation_wins_over_a_later_one(tmp_path, images):
    tasks = _label_studio_json()[:1]
    name, width, height, boxes = IMAGES[0]
    later = {"id": 77, "result": [_rectangle("horse", 1, 1, 9, 9, width, height, "late")], "was_cancelled": False,
             "ground_truth": False, "updated_at": "2026-11-25T10:00:00.000000Z"}
    tasks[0]["annotations"][0]["ground_truth"] = True  # older, but marked as the ground truth
    tasks[0]["annotations"].append(later)
    export = tmp_path / "gt.json"
    export.write_text(json.dumps(tasks))
    coco = read_annotations(export, images).coco
    assert len(coco["annotations"]) == len(boxes)  # the ground truth's two boxes, not the later single one
    tasks[0]["annotations"][0]["ground_truth"] = False
    export.write_text(json.dumps(tasks))
    assert [a["bbox"][2] for a in read_annotations(export, images).coco["annotations"]] == [pytest.approx(9.0)]


def test_push_names_a_label_studio_exports_problems_before_connecting(tmp_path, images):
    tasks = _label_studio_json()[:2]
    tasks[1]["data"]["image"] = "/data/upload/7/0002abcd-nowhere.jpg"
    export = tmp_path / "export.json"
    export.write_text(json.dumps(tasks))
    result = artdet("push", str(export), "--name", "paintings", "--images", str(images), "--server", "127.0.0.1:9",
                    check=False)
    assert result.returncode != 0 and "task 2: image 'nowhere.jpg' is not under the image folder" in result.stderr
    assert "Traceback" not in result.stderr
