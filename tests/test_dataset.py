"""Reading and validating what annotation tools export (COCO and Pascal VOC)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from artdet.detector.dataset import DatasetValidationError, load_coco
from artdet.detector.split import split_dataset
from artdet.detector.annotation_formats import load_annotations
from artdet.detector.voc import voc_to_coco


def _jpeg(path: Path, size=(100, 80), mode="RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, 128).save(path, quality=90)


def test_real_export_quirks_load(tmp_path):
    """Category ids from 0 and sparse, sub-folders, float boxes, missing fields, extras, negatives."""
    _jpeg(tmp_path / "batch1" / "a.jpg")
    _jpeg(tmp_path / "batch2" / "deep" / "b.jpg", (60, 90))
    _jpeg(tmp_path / "c.jpg")
    coco = {
        "info": {"tool": "CVAT"},
        "licenses": [],
        "categories": [{"id": 0, "name": "person", "supercategory": ""}, {"id": 17, "name": "Horse"}],
        "images": [
            {"id": 10, "file_name": "batch1/a.jpg", "width": 100, "height": 80, "flickr_url": ""},
            {"id": 11, "file_name": "batch2/deep/b.jpg"},  # no size: read from the file
            {"id": 12, "file_name": "c.jpg", "width": 100, "height": 80},  # negative: no boxes
        ],
        "annotations": [
            {"id": 1, "image_id": 10, "category_id": 17, "bbox": [10.25, 5.5, 30.75, 20.125]},
            {"id": 2, "image_id": 11, "category_id": 0, "bbox": [0, 0, 60.4, 90.3], "segmentation": [],
             "attributes": {"occluded": False}, "difficult": 1},
        ],
    }
    dataset = load_coco(coco, tmp_path)
    assert dataset.class_names == ["person", "Horse"]
    assert dataset.category_ids == [0, 17]
    assert [im.id for im in dataset.images] == [10, 11, 12]
    assert (dataset.images[1].width, dataset.images[1].height) == (60, 90)
    horse = dataset.boxes(10)[0]
    assert horse.label == 2 and horse.box == pytest.approx((10.25, 5.5, 41.0, 25.625))
    person = dataset.boxes(11)[0]
    assert person.box == pytest.approx((0, 0, 60, 90))  # clipped within tolerance
    assert dataset.boxes(12) == []
    assert dataset.statistics()["negative_images"] == 1
    assert dataset.to_coco()["annotations"][0]["category_id"] == 17


def test_every_defect_is_reported_in_one_error(tmp_path):
    _jpeg(tmp_path / "ok.jpg")
    _jpeg(tmp_path / "wrong_size.jpg", (50, 50))
    (tmp_path / "broken.jpg").write_bytes(b"not an image at all")
    coco = {
        "categories": [{"id": 1, "name": "person"}, {"id": 1, "name": "dup"}],
        "images": [
            {"id": 1, "file_name": "ok.jpg", "width": 100, "height": 80},
            {"id": 1, "file_name": "ok.jpg", "width": 100, "height": 80},
            {"id": 2, "file_name": "missing.jpg", "width": 10, "height": 10},
            {"id": 3, "file_name": "broken.jpg", "width": 10, "height": 10},
            {"id": 4, "file_name": "wrong_size.jpg", "width": 100, "height": 100},
            {"id": 5, "file_name": "../escape.jpg", "width": 10, "height": 10},
        ],
        "annotations": [
            {"id": 100, "image_id": 1, "category_id": 1, "bbox": [10, 10, 0, 5]},
            {"id": 101, "image_id": 1, "category_id": 1, "bbox": [90, 10, 40, 5]},
            {"id": 102, "image_id": 99, "category_id": 1, "bbox": [1, 1, 5, 5]},
            {"id": 103, "image_id": 1, "category_id": 7, "bbox": [1, 1, 5, 5]},
            {"id": 103, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]},
            {"id": 104, "image_id": 1, "category_id": 1, "bbox": [1, 1, "x", 5]},
        ],
    }
    with pytest.raises(DatasetValidationError) as caught:
        load_coco(coco, tmp_path)
    text = str(caught.value)
    expected = [
        ("category 1", "duplicate category id"),
        ("image 1 ", "duplicate image id"),
        ("image 2 ", "not found"),
        ("image 3 ", "unusable"),
        ("image 4 ", "disagrees"),
        ("image 5 ", "relative path inside"),
        ("annotation 100", "non-positive size"),
        ("annotation 101", "outside image 1"),
        ("annotation 102", "unknown image_id 99"),
        ("annotation 103", "unknown category_id 7"),
        ("annotation 103", "duplicate annotation id"),
        ("annotation 104", "four finite numbers"),
    ]
    for where, what in expected:
        assert any(str(p).startswith(where) and what in str(p) for p in caught.value.problems), (where, what, text)
    assert len(caught.value.problems) == len(expected)


def test_unreadable_annotation_file_is_reported(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{ not json")
    with pytest.raises(DatasetValidationError, match="not valid JSON"):
        load_coco(bad)
    with pytest.raises(DatasetValidationError, match="not found"):
        load_coco(tmp_path / "absent.json")


def test_validation_set_uses_training_labels(tmp_path):
    _jpeg(tmp_path / "a.jpg")
    coco = {"categories": [{"id": 5, "name": "dog"}, {"id": 9, "name": "person"}],
            "images": [{"id": 1, "file_name": "a.jpg"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 9, "bbox": [1, 1, 10, 10]}]}
    val = load_coco(coco, tmp_path, class_names=["person", "cat", "dog"])
    assert val.class_names == ["person", "cat", "dog"]
    assert val.boxes(1)[0].label == 1
    coco["categories"].append({"id": 11, "name": "unicorn"})
    with pytest.raises(DatasetValidationError, match="unicorn"):
        load_coco(coco, tmp_path, class_names=["person", "dog"])


def test_pascal_voc_folder(tmp_path):
    _jpeg(tmp_path / "JPEGImages" / "p1.jpg", (200, 100))
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations" / "p1.xml").write_text("""<annotation><filename>p1.jpg</filename>
      <size><width>200</width><height>100</height><depth>3</depth></size>
      <object><name>person</name><difficult>0</difficult><bndbox><xmin>11</xmin><ymin>21</ymin>
      <xmax>50</xmax><ymax>80</ymax></bndbox></object>
      <object><name>horse</name><bndbox><xmin>101</xmin><ymin>1</ymin><xmax>200</xmax><ymax>100</ymax></bndbox>
      </object></annotation>""")
    coco, root = voc_to_coco(tmp_path / "Annotations")
    dataset = load_coco(coco, root)
    assert dataset.class_names == ["person", "horse"]
    assert dataset.boxes(1)[0].box == pytest.approx((10, 20, 50, 80))
    assert dataset.boxes(1)[1].box == pytest.approx((100, 0, 200, 100))
    (tmp_path / "Annotations" / "p2.xml").write_text("<annotation><filename>")
    with pytest.raises(DatasetValidationError, match="p2.xml: not well-formed"):
        voc_to_coco(tmp_path / "Annotations")


def test_a_voc_tree_with_style_folders_finds_its_images_in_the_same_folders(tmp_path):
    """People-Art's layout (README sample data): Annotations/<style>/<name>.jpg.xml with <folder><style>,
    images in JPEGImages/<style>/<name>.jpg; a LabelImg file beside flat images keeps its <folder> unused."""
    for style, name in (("ArtDeco", "erte_gluttony.jpg"), ("Cubism", "erte_gluttony.jpg")):
        _jpeg(tmp_path / "JPEGImages" / style / name, (370, 500))
        (tmp_path / "Annotations" / style).mkdir(parents=True, exist_ok=True)
        (tmp_path / "Annotations" / style / f"{name}.xml").write_text(
            f"<annotation><folder>{style}</folder><filename>{name}</filename><size><width>370</width>"
            "<height>500</height><depth>3</depth></size><object><name>person</name><difficult>0</difficult>"
            "<bndbox><xmin>77</xmin><ymin>284</ymin><xmax>289</xmax><ymax>402</ymax></bndbox></object></annotation>")
    dataset = load_annotations(str(tmp_path / "Annotations"))
    assert [image.file_name for image in dataset.images] == ["ArtDeco/erte_gluttony.jpg", "Cubism/erte_gluttony.jpg"]
    assert dataset.class_names == ["person"] and len(list(dataset.all_boxes())) == 2
    flat = tmp_path / "labelimg" / "images"
    _jpeg(flat / "p1.jpg", (40, 40))
    (flat / "p1.xml").write_text("<annotation><folder>images</folder><filename>p1.jpg</filename><object><name>a"
                                 "</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>9</xmax><ymax>9</ymax></bndbox>"
                                 "</object></annotation>")
    assert [image.file_name for image in load_annotations(str(flat)).images] == ["p1.jpg"]


def test_seeded_split_puts_every_class_on_both_sides(tmp_path):
    names = ["a", "b", "c", "d"]
    images, annotations = [], []
    for image_id in range(1, 31):
        _jpeg(tmp_path / f"{image_id}.jpg", (40, 40))
        images.append({"id": image_id, "file_name": f"{image_id}.jpg"})
        # "d" is rare: only in images 1 and 2
        label = 4 if image_id <= 2 else 1 + image_id % 3
        annotations.append({"id": image_id, "image_id": image_id, "category_id": label, "bbox": [1, 1, 9, 9]})
    dataset = load_coco({"images": images, "annotations": annotations,
                         "categories": [{"id": i + 1, "name": n} for i, n in enumerate(names)]}, tmp_path)
    train, val = split_dataset(dataset, 0.2, seed=3)
    assert len(train.images) + len(val.images) == 30
    assert not {i.id for i in train.images} & {i.id for i in val.images}
    for side in (train, val):
        assert {b.label for b in side.all_boxes()} == {1, 2, 3, 4}
    again = split_dataset(dataset, 0.2, seed=3)[1]
    assert [i.id for i in again.images] == [i.id for i in val.images]
    assert 5 <= len(val.images) <= 7


def test_statistics(tmp_path):
    from artdet.tools.experiments.synthetic import write_shapes_dataset

    path = write_shapes_dataset(tmp_path, images=6, seed=0)
    stats = load_coco(path).statistics()
    assert stats["images"] == 6 and stats["boxes"] == 6
    assert sum(stats["boxes_per_class"].values()) == 6
    coco = json.loads(path.read_text())
    widths, heights = [im["width"] for im in coco["images"]], [im["height"] for im in coco["images"]]
    assert min(heights) < max(heights) and min(widths) < max(widths)  # landscape and portrait images
    assert (stats["min_width"], stats["max_width"]) == (min(widths), max(widths))
    assert (stats["min_height"], stats["max_height"]) == (min(heights), max(heights))
    assert stats["negative_images"] == 0


def test_fields_of_the_wrong_type_are_problems_with_ids(tmp_path):
    """Lists, dicts, bools and huge numbers where ids, sizes and boxes belong: reported, all at once."""
    _jpeg(tmp_path / "a.jpg")
    coco = {
        "categories": [{"id": 1, "name": "person"}, {"id": [2], "name": "x"}, {"id": 3, "name": ["y"]}],
        "images": [
            {"id": 1, "file_name": "a.jpg"},
            {"id": {"n": 2}, "file_name": "a.jpg"},
            {"id": True, "file_name": "a.jpg"},
            {"id": 4, "file_name": ["a.jpg"]},
            {"id": 5, "file_name": "a.jpg", "width": [100], "height": 80},
            {"id": 6, "file_name": "a" * 300 + ".jpg"},
        ],
        "annotations": [
            {"id": 10, "image_id": True, "category_id": 1, "bbox": [1, 1, 5, 5]},
            {"id": 11, "image_id": [1], "category_id": {"id": 1}, "bbox": [1, 1, 5, 5]},
            {"id": 12, "image_id": 1, "category_id": 1, "bbox": [1, 1, 10 ** 400, 5]},
            {"id": 13, "image_id": 1, "category_id": 1, "bbox": [1, [1], 5, 5]},
            {"id": 14, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5], "iscrowd": [0]},
            {"id": [15], "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]},
        ],
    }
    with pytest.raises(DatasetValidationError) as caught:
        load_coco(coco, tmp_path)
    expected = [
        ("category #1", "integer 'id'"),
        ("category 3", "non-empty 'name'"),
        ("image #1", "integer 'id'"),
        ("image #2", "integer 'id'"),
        ("image 4 ", "file_name"),
        ("image 5 ", "'width' must be a positive number"),
        ("image 6 ", "longer than 255 bytes"),
        ("annotation 10", "integer 'image_id', got True"),
        ("annotation 11", "integer 'image_id'"),
        ("annotation 11", "integer 'category_id'"),
        ("annotation 12", "four finite numbers"),
        ("annotation 13", "four finite numbers"),
        ("annotation 14", "'iscrowd' must be 0 or 1"),
        ("annotation #5", "integer 'id'"),
    ]
    problems = [str(p) for p in caught.value.problems]
    for where, what in expected:
        assert any(p.startswith(where) and what in p for p in problems), (where, what, problems)
    assert len(problems) == len(expected), problems
    with pytest.raises(DatasetValidationError, match="images: missing: a list of images is required, got 5"):
        load_coco({**coco, "images": 5}, tmp_path)


@pytest.mark.parametrize("text, what", [
    ("[]", "top level must be a JSON object, got list"),
    ("null", "got null"),
    ("1e999", "got float"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ('{"images": [{"id": 1' + "0" * 5000 + "}]}", "not valid JSON"),
])
def test_annotation_files_of_the_wrong_shape(tmp_path, text, what):
    path = tmp_path / "odd.json"
    path.write_text(text)
    with pytest.raises(DatasetValidationError, match=what):
        load_coco(path)


def test_a_class_missing_from_the_file_cannot_be_referenced(tmp_path):
    """With the model's classes, a class the file lacks gets a negative id internally: not a usable category_id."""
    _jpeg(tmp_path / "a.jpg")
    coco = {"categories": [{"id": 5, "name": "dog"}], "images": [{"id": 1, "file_name": "a.jpg"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": -1, "bbox": [1, 1, 10, 10]}]}
    with pytest.raises(DatasetValidationError, match="annotation 1: unknown category_id -1"):
        load_coco(coco, tmp_path, class_names=["person", "dog"])


def test_structure_check_needs_no_image_files():
    from artdet.detector.dataset import check_coco_structure

    coco = {"categories": [{"id": 1, "name": "person"}],
            "images": [{"id": 1, "file_name": "not/there.jpg"}, {"id": 2, "file_name": "../up.jpg"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1e6, 1e6, 5, 5]},
                            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [1, 1, 0, 5]}]}
    with pytest.raises(DatasetValidationError) as caught:
        check_coco_structure(coco)
    problems = [str(p) for p in caught.value.problems]
    assert len(problems) == 2 and "relative path inside" in problems[0] and "non-positive size" in problems[1]
    coco["images"].pop()
    coco["annotations"].pop()
    check_coco_structure(coco)  # missing files and box bounds are the full check's business


def test_pascal_voc_odd_numbers_and_images_named_twice(tmp_path):
    def xml(file_name, width="200", difficult="0"):
        return (f"<annotation><filename>{file_name}</filename><size><width>{width}</width><height>100</height>"
                f"</size><object><name>person</name><difficult>{difficult}</difficult><bndbox><xmin>1</xmin>"
                f"<ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object></annotation>")

    folder = tmp_path / "Annotations"
    folder.mkdir()
    (folder / "a.xml").write_text(xml("p1.jpg"))
    (folder / "b.xml").write_text(xml("p1.jpg"))
    (folder / "c.xml").write_text(xml("p3.jpg", width="inf"))
    (folder / "d.xml").write_text(xml("p4.jpg", width="nan"))
    (folder / "e.xml").write_text(xml("p5.jpg", difficult="maybe"))
    (folder / "f.xml").mkdir()  # a folder that looks like an annotation file
    with pytest.raises(DatasetValidationError) as caught:
        voc_to_coco(folder)
    problems = [str(p) for p in caught.value.problems]
    assert any(p.startswith("b.xml: <filename> 'p1.jpg' is also the image of a.xml") for p in problems), problems
    assert any(p.startswith("c.xml: <size> needs numeric <width>") for p in problems), problems
    assert any(p.startswith("d.xml: <size> needs numeric <width>") for p in problems), problems
    assert any(p.startswith("e.xml: an <object>'s <difficult> must be 0 or 1") for p in problems), problems
    assert len(problems) == 4, problems
