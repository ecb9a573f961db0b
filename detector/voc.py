"""Pascal VOC XML folders (LabelImg, many art datasets) converted to COCO for the one validator."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from detector.dataset import DatasetValidationError, Problem


def _text(node: ET.Element | None, tag: str) -> str | None:
    child = node.find(tag) if node is not None else None
    return child.text.strip() if child is not None and child.text else None


def _number(node: ET.Element | None, tag: str) -> float | None:
    value = _text(node, tag)
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def voc_to_coco(annotation_dir: str | Path, image_dir: str | Path | None = None) -> tuple[dict, Path]:
    """Read every `*.xml` under `annotation_dir`; returns (COCO dict, image root).

    Images are looked up by each file's `<filename>` in `image_dir` (default: a sibling `JPEGImages`
    folder when present, else the annotation folder). Malformed files are reported together.
    """
    annotation_dir = Path(annotation_dir)
    if image_dir is None:
        sibling = annotation_dir.parent / "JPEGImages"
        image_dir = sibling if sibling.is_dir() else annotation_dir
    image_dir = Path(image_dir)
    xml_files = sorted(annotation_dir.rglob("*.xml"))
    problems: list[Problem] = []
    if not xml_files:
        problems.append(Problem(str(annotation_dir), "no .xml annotation files found"))
    images, annotations, categories = [], [], {}
    for image_id, xml_path in enumerate(xml_files, start=1):
        where = str(xml_path.relative_to(annotation_dir))
        try:
            root = ET.parse(xml_path).getroot()
        except ET.ParseError as exc:
            problems.append(Problem(where, f"not well-formed XML ({exc})"))
            continue
        file_name = _text(root, "filename")
        if not file_name:
            problems.append(Problem(where, "missing <filename>"))
            continue
        size = root.find("size")
        image = {"id": image_id, "file_name": file_name}
        width, height = _number(size, "width"), _number(size, "height")
        if width and height:  # LabelImg writes 0 when it could not read the image; then trust the file
            image.update(width=int(width), height=int(height))
        images.append(image)
        for obj in root.iter("object"):
            name = _text(obj, "name")
            box = obj.find("bndbox")
            coords = [_number(box, t) for t in ("xmin", "ymin", "xmax", "ymax")]
            if not name or any(c is None for c in coords):
                problems.append(Problem(where, "an <object> lacks <name> or a numeric <bndbox>"))
                continue
            category_id = categories.setdefault(name, len(categories) + 1)
            x1, y1, x2, y2 = coords
            annotations.append({
                "id": len(annotations) + 1,
                "image_id": image_id,
                "category_id": category_id,
                # VOC pixel indices are 1-based and inclusive
                "bbox": [x1 - 1, y1 - 1, x2 - x1 + 1, y2 - y1 + 1],
                "iscrowd": 0,
                "difficult": int(_text(obj, "difficult") or 0),
            })
    if problems:
        raise DatasetValidationError(str(annotation_dir), problems)
    coco = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": cid, "name": name} for name, cid in categories.items()],
    }
    return coco, image_dir
