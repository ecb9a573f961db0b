"""COCO detection datasets: read what annotation tools export, validate, report every problem at once.

Torch-free: the server validates uploads with it, and evaluation builds ground truth from it.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from artdet.detector.errors import InvalidArgument, show
from artdet.detector.images import DEFAULT_MAX_PIXELS, ImageDecodeError, read_image_size

DEFAULT_CLIP_TOLERANCE_PX = 2.0
MAX_NAME_PART_BYTES = 255  # one folder or file name, as common file systems allow
MAX_NAME_BYTES = 1024  # a whole relative file name


@dataclass(frozen=True)
class Problem:
    where: str  # e.g. "annotation 17", "image 3 (a/b.jpg)", "categories"
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


class DatasetValidationError(InvalidArgument):
    """Every problem found in a dataset, reported together."""

    def __init__(self, source: str, problems: list[Problem]):
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s):\n{lines}")


def file_name_problem(name: Any) -> str | None:
    """Why `name` cannot be a relative file name under a folder the server owns; None when it can."""
    if not isinstance(name, str) or not name:
        return f"a non-empty file name is required, got {show(name)}"
    if any(ord(c) < 32 or ord(c) == 127 or 0xD800 <= ord(c) <= 0xDFFF for c in name):
        return f"file name {show(name)} contains control characters"
    posix = name.replace("\\", "/")
    parts = [part for part in posix.split("/") if part not in ("", ".")]
    if posix.startswith("/") or ".." in parts:
        return f"file name {show(name)} must be a relative path inside the image root"
    if not parts:
        return f"file name {show(name)} names no file"
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        return f"file name {show(name)} is longer than {MAX_NAME_BYTES} bytes"
    if any(len(part.encode("utf-8")) > MAX_NAME_PART_BYTES for part in parts):
        return f"file name {show(name)} has a part longer than {MAX_NAME_PART_BYTES} bytes"
    return None


def normalize_file_name(name: str) -> str:
    """The canonical form of a name that passed file_name_problem: '/' separators, no '.' or empty parts."""
    return "/".join(part for part in name.replace("\\", "/").split("/") if part not in ("", "."))


def check_file_name(name: Any, field: str) -> str:
    """`name` normalised (see normalize_file_name), or InvalidArgument naming `field`."""
    problem = file_name_problem(name)
    if problem is not None:
        raise InvalidArgument(f"{field}: {problem}")
    return normalize_file_name(name)


class NameTree:
    """Relative file names that must coexist in one folder: none twice, none both a file and a folder."""

    def __init__(self) -> None:
        self.files: set[str] = set()
        self.folders: set[str] = set()

    def add(self, name: str) -> str | None:
        """Record normalised `name`; the reason it clashes with an earlier one, or None."""
        if name in self.files:
            return f"{show(name)} is named twice"
        if name in self.folders:
            return f"{show(name)} is a folder of an earlier file name, so it cannot also be a file"
        parts = name.split("/")
        prefixes = ["/".join(parts[:end]) for end in range(1, len(parts))]
        for prefix in prefixes:
            if prefix in self.files:
                return f"{show(name)} lies under {show(prefix)}, an earlier file name, so that cannot be a folder"
        self.files.add(name)
        self.folders.update(prefixes)
        return None


def parse_json(data: bytes | str, source: str) -> Any:
    """JSON text (UTF-8, a byte order mark allowed) to Python; DatasetValidationError naming `source` otherwise."""
    try:
        text = data.decode("utf-8-sig") if isinstance(data, (bytes, bytearray)) else data
        return json.loads(text)
    except UnicodeDecodeError as exc:
        reason = f"not UTF-8 text ({exc.reason} at byte {exc.start})"
    except RecursionError:
        reason = "not valid JSON (nested too deeply)"
    except ValueError as exc:  # JSONDecodeError, and integers beyond Python's digit limit
        reason = f"not valid JSON ({exc})"
    raise DatasetValidationError(source, [Problem("file", reason)])


@dataclass
class ImageRecord:
    id: int
    file_name: str
    width: int
    height: int
    path: Path


@dataclass
class BoxRecord:
    id: int
    image_id: int
    label: int  # contiguous, 1..num_classes (0 is background)
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in upright image pixels
    iscrowd: bool = False


@dataclass
class DetectionDataset:
    """Validated images and boxes with contiguous labels; `category_ids[label - 1]` is the source id."""

    class_names: list[str]
    category_ids: list[int]
    images: list[ImageRecord]
    boxes_by_image: dict[int, list[BoxRecord]] = field(default_factory=dict)
    source: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def boxes(self, image_id: int) -> list[BoxRecord]:
        return self.boxes_by_image.get(image_id, [])

    def all_boxes(self) -> Iterable[BoxRecord]:
        for image in self.images:
            yield from self.boxes(image.id)

    def subset(self, image_ids: Iterable[int]) -> "DetectionDataset":
        keep = set(image_ids)
        return DetectionDataset(
            class_names=list(self.class_names),
            category_ids=list(self.category_ids),
            images=[im for im in self.images if im.id in keep],
            boxes_by_image={k: v for k, v in self.boxes_by_image.items() if k in keep},
            source=self.source,
        )

    def statistics(self) -> dict[str, Any]:
        per_class = Counter(self.class_names[b.label - 1] for b in self.all_boxes())
        widths = [im.width for im in self.images]
        heights = [im.height for im in self.images]
        return {
            "images": len(self.images),
            "boxes": sum(per_class.values()),
            "negative_images": sum(1 for im in self.images if not self.boxes(im.id)),
            "boxes_per_class": {name: per_class.get(name, 0) for name in self.class_names},
            "min_width": min(widths, default=0),
            "max_width": max(widths, default=0),
            "min_height": min(heights, default=0),
            "max_height": max(heights, default=0),
        }

    def to_coco(self) -> dict[str, Any]:
        """COCO JSON with the source category ids and clipped boxes (pycocotools ground truth)."""
        annotations = []
        for box in self.all_boxes():
            x1, y1, x2, y2 = box.box
            annotations.append({
                "id": box.id,
                "image_id": box.image_id,
                "category_id": self.category_ids[box.label - 1],
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "area": (x2 - x1) * (y2 - y1),
                "iscrowd": int(box.iscrowd),
            })
        return {
            "images": [{"id": im.id, "file_name": im.file_name, "width": im.width, "height": im.height}
                       for im in self.images],
            "annotations": annotations,
            "categories": [{"id": cid, "name": name} for cid, name in zip(self.category_ids, self.class_names)],
        }


def _is_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False


def _is_int_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _image_where(entry: dict) -> str:
    return f"image {show(entry.get('id'))} ({show(entry.get('file_name'))})"


# how much of the dataset a validator checks
_FILES = "files"  # image files exist, decode, and give the sizes
_DECLARED = "declared"  # no files: the declared sizes are trusted
_STRUCTURE = "structure"  # no files and no sizes: types, ids, references, names, box shapes


class _CocoValidator:
    def __init__(self, coco: dict, image_root: Path, clip_tolerance: float, max_pixels: int, mode: str):
        self.coco = coco
        self.image_root = image_root
        self.clip_tolerance = clip_tolerance
        self.max_pixels = max_pixels
        self.mode = mode
        self.problems: list[Problem] = []
        self.declared_image_ids: set[int] = set()
        self.declared_category_ids: set[int] = set()

    def problem(self, where: str, message: str) -> None:
        self.problems.append(Problem(where, message))

    def categories(self) -> tuple[list[int], list[str]]:
        entries = self.coco.get("categories")
        if not isinstance(entries, list) or not entries:
            self.problem("categories", f"missing or empty: a list of at least one category is required, "
                                       f"got {show(entries, 40)}")
            return [], []
        seen: dict[int, str] = {}
        names: Counter = Counter()
        for index, cat in enumerate(entries):
            if not isinstance(cat, dict) or not _is_int_id(cat.get("id")):
                got = cat.get("id") if isinstance(cat, dict) else cat
                self.problem(f"category #{index}", f"needs an integer 'id', got {show(got, 40)}")
                continue
            name = cat.get("name")
            if not isinstance(name, str) or not name.strip():
                self.problem(f"category {show(cat['id'])}", f"needs a non-empty 'name', got {show(name, 40)}")
                continue
            if cat["id"] in seen:
                self.problem(f"category {show(cat['id'])}", "duplicate category id")
                continue
            seen[cat["id"]] = name.strip()
            names[name.strip().lower()] += 1
        for name, count in names.items():
            if count > 1:
                self.problem("categories", f"category name {show(name)} is used {count} times")
        self.declared_category_ids = set(seen)
        ids = sorted(seen)
        return ids, [seen[i] for i in ids]

    def images(self) -> list[ImageRecord]:
        entries = self.coco.get("images")
        if not isinstance(entries, list):
            self.problem("images", f"missing: a list of images is required, got {show(entries, 40)}")
            return []
        records: list[ImageRecord] = []
        for index, entry in enumerate(entries):
            if not isinstance(entry, dict) or not _is_int_id(entry.get("id")):
                got = entry.get("id") if isinstance(entry, dict) else entry
                self.problem(f"image #{index}", f"needs an integer 'id', got {show(got, 40)}")
                continue
            where = _image_where(entry)
            if entry["id"] in self.declared_image_ids:
                self.problem(where, "duplicate image id")
                continue
            self.declared_image_ids.add(entry["id"])
            record = self._image_record(entry, where)
            if record is not None:
                records.append(record)
        return records

    def _image_record(self, entry: dict, where: str) -> ImageRecord | None:
        file_name = entry.get("file_name")
        problem = file_name_problem(file_name)
        if problem is not None:
            self.problem(where, f"'file_name': {problem}")
            return None
        path = self.image_root / normalize_file_name(file_name)
        declared = (entry.get("width"), entry.get("height"))
        wrong = [key for key, value in zip(("width", "height"), declared)
                 if value is not None and not (_is_number(value) and value > 0)]
        if wrong:
            self.problem(where, " and ".join(f"'{key}'" for key in wrong) + " must be a positive number, got "
                         + ", ".join(show(entry.get(key), 40) for key in wrong))
            return None
        if self.mode == _STRUCTURE:
            sizes = [int(v) if v is not None else 0 for v in declared]
            return ImageRecord(entry["id"], file_name, sizes[0], sizes[1], path)
        if self.mode == _DECLARED:
            if not all(v is not None and v > 0 for v in declared):
                self.problem(where, "needs positive 'width' and 'height' when image files are not checked")
                return None
            return ImageRecord(entry["id"], file_name, int(declared[0]), int(declared[1]), path)
        try:
            found = path.is_file()
        except OSError as exc:
            self.problem(where, f"image file cannot be read ({exc.strerror or type(exc).__name__})")
            return None
        if not found:
            self.problem(where, "image file not found")
            return None
        try:
            size = read_image_size(path, self.max_pixels)
        except ImageDecodeError as exc:
            self.problem(where, f"image file unusable: {exc.reason}")
            return None
        if declared != (None, None) and (declared[0] != size.width or declared[1] != size.height):
            self.problem(
                where,
                f"declared size {show(declared[0])}x{show(declared[1])} disagrees with the file's upright size "
                f"{size.width}x{size.height}",
            )
            return None
        return ImageRecord(entry["id"], file_name, size.width, size.height, path)

    def boxes(self, images: dict[int, ImageRecord], label_of: dict[int, int]) -> dict[int, list[BoxRecord]]:
        entries = self.coco.get("annotations", [])
        if not isinstance(entries, list):
            self.problem("annotations", f"must be a list, got {show(entries, 40)}")
            return {}
        by_image: dict[int, list[BoxRecord]] = {}
        seen_ids: set[int] = set()
        for index, ann in enumerate(entries):
            if not isinstance(ann, dict) or not _is_int_id(ann.get("id")):
                got = ann.get("id") if isinstance(ann, dict) else ann
                self.problem(f"annotation #{index}", f"needs an integer 'id', got {show(got, 40)}")
                continue
            where = f"annotation {show(ann['id'])}"
            if ann["id"] in seen_ids:
                self.problem(where, "duplicate annotation id")
                continue
            seen_ids.add(ann["id"])
            usable = True
            for key, known in (("image_id", self.declared_image_ids), ("category_id", self.declared_category_ids)):
                value = ann.get(key)
                if not _is_int_id(value):
                    self.problem(where, f"needs an integer '{key}', got {show(value, 40)} ({_kind(value)})")
                    usable = False
                elif value not in known or (key == "category_id" and value not in label_of):
                    self.problem(where, f"unknown {key} {show(value)}")
                    usable = False
            iscrowd = ann.get("iscrowd", 0)
            if not (isinstance(iscrowd, int) and iscrowd in (0, 1)):
                self.problem(where, f"'iscrowd' must be 0 or 1, got {show(iscrowd, 40)}")
                usable = False
            if not usable:
                continue
            image = images.get(ann["image_id"])
            box = self._box(ann, image, where)
            if box is not None and image is not None:  # an image with a problem is already reported
                by_image.setdefault(image.id, []).append(
                    BoxRecord(ann["id"], image.id, label_of[ann["category_id"]], box, bool(iscrowd)))
        return by_image

    def _box(self, ann: dict, image: ImageRecord | None, where: str):
        bbox = ann.get("bbox")
        if not isinstance(bbox, (list, tuple)) or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
            self.problem(where, f"bbox must be four finite numbers [x, y, width, height], got {show(bbox)}")
            return None
        x, y, w, h = (float(v) for v in bbox)
        if w <= 0 or h <= 0:
            self.problem(where, f"bbox has non-positive size {w:g}x{h:g}")
            return None
        if image is None or self.mode == _STRUCTURE:  # the size to check against is not known here
            return None
        x1, y1, x2, y2 = x, y, x + w, y + h
        tol = self.clip_tolerance
        if x1 < -tol or y1 < -tol or x2 > image.width + tol or y2 > image.height + tol:
            self.problem(
                where,
                f"bbox [{x:g}, {y:g}, {w:g}, {h:g}] lies outside image {show(image.id)} "
                f"({image.width}x{image.height}) by more than {tol:g} px",
            )
            return None
        x1, y1 = max(0.0, x1), max(0.0, y1)
        x2, y2 = min(float(image.width), x2), min(float(image.height), y2)
        if x2 - x1 <= 0 or y2 - y1 <= 0:
            self.problem(where, "bbox has no area inside the image")
            return None
        return (x1, y1, x2, y2)


def _validate(coco: Any, source: str, image_root: Path, clip_tolerance: float, max_pixels: int, mode: str,
              class_names: list[str] | None) -> DetectionDataset:
    if not isinstance(coco, dict):
        raise DatasetValidationError(source, [Problem("file", f"top level must be a JSON object, got {_kind(coco)}")])
    validator = _CocoValidator(coco, image_root, clip_tolerance, max_pixels, mode)
    category_ids, names = validator.categories()
    if class_names is not None:
        by_name = {n.lower(): cid for cid, n in zip(category_ids, names)}
        missing = [n for n in names if n.lower() not in {c.lower() for c in class_names}]
        if missing:
            validator.problem("categories", f"classes {show(missing)} are not among the model's classes "
                                            f"{show(class_names)}")
        # a class the file lacks gets a unique negative id so its (empty) ground truth stays distinct
        category_ids = [by_name.get(n.lower(), -(i + 1)) for i, n in enumerate(class_names)]
        names = list(class_names)
    label_of = {cid: index + 1 for index, cid in enumerate(category_ids)}
    records = validator.images()
    boxes = validator.boxes({r.id: r for r in records}, label_of)
    if validator.problems:
        raise DatasetValidationError(source, validator.problems)
    return DetectionDataset(names, category_ids, records, boxes, source)


def check_coco_structure(coco: Any, source: str = "annotations") -> None:
    """What can be checked without the image files: types, ids and references, file names, box shapes.

    Raises DatasetValidationError listing every such problem; load_coco with the files checks the rest.
    """
    _validate(coco, source, Path("."), DEFAULT_CLIP_TOLERANCE_PX, DEFAULT_MAX_PIXELS, _STRUCTURE, None)


def load_coco(
    coco: dict | str | Path,
    image_root: str | Path | None = None,
    *,
    clip_tolerance: float = DEFAULT_CLIP_TOLERANCE_PX,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    check_files: bool = True,
    class_names: list[str] | None = None,
    source: str | None = None,
) -> DetectionDataset:
    """Read and validate a COCO detection dataset; raise DatasetValidationError listing every problem.

    Images resolve under `image_root` (default: the JSON file's folder). `class_names`, when given,
    fixes the label order (a validation set must use the training set's labels). `coco` may be the
    parsed JSON of any shape: anything but an object is reported as a problem. `source` names it in
    messages (default: the file, or "annotations").
    """
    source = source or "annotations"
    if isinstance(coco, (str, os.PathLike)):
        path = Path(coco)
        source = source or str(path)
        image_root = Path(image_root) if image_root is not None else path.parent
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise DatasetValidationError(source, [Problem("file", "annotation file not found")]) from None
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise DatasetValidationError(source, [Problem("file", f"cannot be read ({reason})")]) from None
        coco = parse_json(data, source)
    if image_root is None:
        raise ValueError("image_root is required when the annotations are given as parsed JSON")
    mode = _FILES if check_files else _DECLARED
    return _validate(coco, source, Path(image_root), clip_tolerance, max_pixels, mode, class_names)
