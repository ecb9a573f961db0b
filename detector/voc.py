"""Pascal VOC XML folders (LabelImg, many art datasets) converted to COCO for the one validator."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path, PurePosixPath
from typing import Iterable

from artdet.detector.dataset import DatasetValidationError, NameTree, Problem, file_name_problem, normalize_file_name
from artdet.detector.errors import show

_INVALID = object()  # a value that is present but not a finite number


def _text(node: ET.Element | None, tag: str) -> str | None:
    child = node.find(tag) if node is not None else None
    return child.text.strip() if child is not None and child.text else None


def _number(node: ET.Element | None, tag: str):
    """None when absent, the finite number, or _INVALID."""
    value = _text(node, tag)
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return _INVALID
    return number if math.isfinite(number) else _INVALID


def _flag(text: str | None) -> int | None:
    """<difficult>: absent is 0; an integer (tools write 0 or 1) or true/false; None when unreadable."""
    if text is None:
        return 0
    if text.lower() in ("true", "false"):
        return int(text.lower() == "true")
    try:
        return int(text)
    except ValueError:  # not an integer, or one beyond Python's digit limit
        return None


def _read_one(where: str, content: bytes, image_id: int, problems: list[Problem], images: list, annotations: list,
              categories: dict[str, int], named_by: dict[str, str]) -> None:
    try:
        root = ET.fromstring(content)
    except ET.ParseError as exc:
        problems.append(Problem(where, f"not well-formed XML ({exc})"))
        return
    except (ValueError, LookupError, RecursionError) as exc:  # odd encodings and the like
        problems.append(Problem(where, f"not readable XML ({type(exc).__name__})"))
        return
    file_name = _text(root, "filename")
    if not file_name:
        problems.append(Problem(where, "missing <filename>"))
        return
    folder = PurePosixPath(where).parent
    if folder.name and _text(root, "folder") == folder.name:  # Annotations/S/x.xml of JPEGImages/S/x.jpg
        file_name = f"{folder}/{file_name}"
    problem = file_name_problem(file_name)
    if problem is not None:
        problems.append(Problem(where, f"<filename>: {problem}"))
        return
    key = normalize_file_name(file_name)
    if key in named_by:
        problems.append(Problem(where, f"<filename> {show(file_name)} is also the image of {named_by[key]}"))
        return
    named_by[key] = where
    image = {"id": image_id, "file_name": file_name}
    size = root.find("size")
    width, height = _number(size, "width"), _number(size, "height")
    if any(v is _INVALID or (v is not None and v < 0) for v in (width, height)):
        problems.append(Problem(where, f"<size> needs numeric <width> and <height>, got "
                                       f"{show(_text(size, 'width'), 40)} x {show(_text(size, 'height'), 40)}"))
        return
    if width and height:  # LabelImg writes 0 when it could not read the image; then trust the file
        image.update(width=int(width), height=int(height))
    images.append(image)
    for obj in root.iter("object"):
        name = _text(obj, "name")
        box = obj.find("bndbox")
        coords = [_number(box, t) for t in ("xmin", "ymin", "xmax", "ymax")]
        if not name or any(c is None or c is _INVALID for c in coords):
            problems.append(Problem(where, "an <object> lacks <name> or a numeric <bndbox>"))
            continue
        difficult = _flag(_text(obj, "difficult"))
        if difficult is None:
            problems.append(Problem(where, f"an <object>'s <difficult> must be 0 or 1, got "
                                           f"{show(_text(obj, 'difficult'), 40)}"))
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
            "difficult": difficult,
        })


def voc_files_to_coco(files: Iterable[tuple[str, bytes]], source: str) -> dict:
    """COCO from VOC XML files given as (relative name, content), e.g. an upload's annotation files.

    Problems are reported together: bad or clashing names (as `source[index]`), malformed files (by name),
    two files naming the same image. Nothing is written to disk.
    """
    problems: list[Problem] = []
    names = NameTree()
    readable: list[tuple[str, bytes]] = []
    for index, (name, content) in enumerate(files):
        field = f"{source}[{index}]"
        problem = file_name_problem(name)
        if problem is None:
            name = normalize_file_name(name)
            problem = names.add(name)
        if problem is None and not name.endswith(".xml"):
            problem = f"{show(name)} is not a .xml annotation file"
        if problem is not None:
            problems.append(Problem(field, problem))
            continue
        readable.append((name, content))
    if not readable and not problems:
        problems.append(Problem(source, "no .xml annotation files"))
    images, annotations, categories, named_by = [], [], {}, {}
    # the order a folder's sorted paths give
    readable.sort(key=lambda item: PurePosixPath(item[0]).parts)
    for image_id, (name, content) in enumerate(readable, start=1):
        _read_one(name, content, image_id, problems, images, annotations, categories, named_by)
    if problems:
        raise DatasetValidationError(source, problems)
    return {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": cid, "name": name} for name, cid in categories.items()],
    }


def voc_image_root(annotation_dir: Path) -> Path:
    """Where a VOC folder's images are unless told: a sibling JPEGImages/ (VOC's layout), else the folder itself."""
    sibling = annotation_dir.parent / "JPEGImages"
    return sibling if sibling.is_dir() else annotation_dir


def voc_to_coco(annotation_dir: str | Path, image_dir: str | Path | None = None) -> tuple[dict, Path]:
    """Read every `*.xml` under `annotation_dir`; returns (COCO dict, image root).

    Images are looked up by each file's `<filename>` in `image_dir` (default: a sibling `JPEGImages`
    folder when present, else the annotation folder); a file in a sub-folder whose `<folder>` names that
    sub-folder (People-Art's `Annotations/<style>/`) has its image in the same sub-folder of `image_dir`.
    Malformed files are reported together.
    """
    annotation_dir = Path(annotation_dir)
    image_dir = Path(image_dir) if image_dir is not None else voc_image_root(annotation_dir)
    xml_files = sorted(p for p in annotation_dir.rglob("*.xml") if p.is_file())
    if not xml_files:
        raise DatasetValidationError(str(annotation_dir), [Problem(str(annotation_dir),
                                                                   "no .xml annotation files found")])
    files = [(xml_path.relative_to(annotation_dir).as_posix(), xml_path.read_bytes()) for xml_path in xml_files]
    return voc_files_to_coco(files, str(annotation_dir)), image_dir
