"""COCO detection datasets: read what annotation tools export, validate, report every problem at once.

Torch-free: the server validates uploads with it, and evaluation builds ground truth from it.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from detector.errors import InvalidArgument
from detector.images import DEFAULT_MAX_PIXELS, ImageDecodeError, read_image_size, resolve_inside

DEFAULT_CLIP_TOLERANCE_PX = 2.0


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
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _image_where(entry: dict) -> str:
    return f"image {entry.get('id')!r} ({entry.get('file_name')!r})"


class _CocoValidator:
    def __init__(self, coco: dict, image_root: Path, clip_tolerance: float, max_pixels: int, check_files: bool):
        self.coco = coco
        self.image_root = image_root
        self.clip_tolerance = clip_tolerance
        self.max_pixels = max_pixels
        self.check_files = check_files
        self.problems: list[Problem] = []

    def problem(self, where: str, message: str) -> None:
        self.problems.append(Problem(where, message))

    def categories(self) -> tuple[list[int], list[str]]:
        entries = self.coco.get("categories")
        if not isinstance(entries, list) or not entries:
            self.problem("categories", "missing or empty: at least one category is required")
            return [], []
        seen: dict[int, str] = {}
        names: Counter = Counter()
        for index, cat in enumerate(entries):
            if not isinstance(cat, dict) or not _is_int_id(cat.get("id")):
                self.problem(f"category #{index}", "needs an integer 'id'")
                continue
            name = cat.get("name")
            if not isinstance(name, str) or not name.strip():
                self.problem(f"category {cat['id']}", "needs a non-empty 'name'")
                continue
            if cat["id"] in seen:
                self.problem(f"category {cat['id']}", "duplicate category id")
                continue
            seen[cat["id"]] = name.strip()
            names[name.strip().lower()] += 1
        for name, count in names.items():
            if count > 1:
                self.problem("categories", f"category name {name!r} is used {count} times")
        ids = sorted(seen)
        return ids, [seen[i] for i in ids]

    def images(self) -> list[ImageRecord]:
        entries = self.coco.get("images")
        if not isinstance(entries, list):
            self.problem("images", "missing: a list of images is required")
            return []
        records: list[ImageRecord] = []
        seen_ids: set[int] = set()
        for index, entry in enumerate(entries):
            if not isinstance(entry, dict) or not _is_int_id(entry.get("id")):
                self.problem(f"image #{index}", "needs an integer 'id'")
                continue
            where = _image_where(entry)
            if entry["id"] in seen_ids:
                self.problem(where, "duplicate image id")
                continue
            seen_ids.add(entry["id"])
            record = self._image_record(entry, where)
            if record is not None:
                records.append(record)
        return records

    def _image_record(self, entry: dict, where: str) -> ImageRecord | None:
        file_name = entry.get("file_name")
        if not isinstance(file_name, str) or not file_name:
            self.problem(where, "needs a 'file_name'")
            return None
        try:
            path = resolve_inside(self.image_root, file_name.replace("\\", "/"))
        except ValueError as exc:
            self.problem(where, str(exc))
            return None
        declared = (entry.get("width"), entry.get("height"))
        if not self.check_files:
            if not all(_is_number(v) and v > 0 for v in declared):
                self.problem(where, "needs positive 'width' and 'height' when image files are not checked")
                return None
            return ImageRecord(entry["id"], file_name, int(declared[0]), int(declared[1]), path)
        if not path.is_file():
            self.problem(where, f"image file not found: {path}")
            return None
        try:
            size = read_image_size(path, self.max_pixels)
        except ImageDecodeError as exc:
            self.problem(where, f"image file unusable: {exc.reason}")
            return None
        if declared != (None, None) and (declared[0] != size.width or declared[1] != size.height):
            self.problem(
                where,
                f"declared size {declared[0]}x{declared[1]} disagrees with the file's upright size "
                f"{size.width}x{size.height}",
            )
            return None
        return ImageRecord(entry["id"], file_name, size.width, size.height, path)

    def boxes(self, images: dict[int, ImageRecord], label_of: dict[int, int], declared_image_ids: set[int]):
        entries = self.coco.get("annotations", [])
        if not isinstance(entries, list):
            self.problem("annotations", "must be a list")
            return {}
        by_image: dict[int, list[BoxRecord]] = {}
        seen_ids: set[int] = set()
        for index, ann in enumerate(entries):
            if not isinstance(ann, dict) or not _is_int_id(ann.get("id")):
                self.problem(f"annotation #{index}", "needs an integer 'id'")
                continue
            where = f"annotation {ann['id']}"
            if ann["id"] in seen_ids:
                self.problem(where, "duplicate annotation id")
                continue
            seen_ids.add(ann["id"])
            image_id, category_id = ann.get("image_id"), ann.get("category_id")
            if image_id not in declared_image_ids:
                self.problem(where, f"unknown image_id {image_id!r}")
                continue
            if category_id not in label_of:
                self.problem(where, f"unknown category_id {category_id!r}")
                continue
            image = images.get(image_id)
            if image is None:  # the image itself had a problem, already reported
                continue
            box = self._box(ann, image, where)
            if box is not None:
                by_image.setdefault(image_id, []).append(
                    BoxRecord(ann["id"], image_id, label_of[category_id], box, bool(ann.get("iscrowd", 0)))
                )
        return by_image

    def _box(self, ann: dict, image: ImageRecord, where: str):
        bbox = ann.get("bbox")
        if not isinstance(bbox, (list, tuple)) or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
            self.problem(where, f"bbox must be four finite numbers [x, y, width, height], got {bbox!r}")
            return None
        x, y, w, h = (float(v) for v in bbox)
        if w <= 0 or h <= 0:
            self.problem(where, f"bbox has non-positive size {w:g}x{h:g}")
            return None
        x1, y1, x2, y2 = x, y, x + w, y + h
        tol = self.clip_tolerance
        if x1 < -tol or y1 < -tol or x2 > image.width + tol or y2 > image.height + tol:
            self.problem(
                where,
                f"bbox [{x:g}, {y:g}, {w:g}, {h:g}] lies outside image {image.id} "
                f"({image.width}x{image.height}) by more than {tol:g} px",
            )
            return None
        x1, y1 = max(0.0, x1), max(0.0, y1)
        x2, y2 = min(float(image.width), x2), min(float(image.height), y2)
        if x2 - x1 <= 0 or y2 - y1 <= 0:
            self.problem(where, "bbox has no area inside the image")
            return None
        return (x1, y1, x2, y2)


def load_coco(
    coco: dict | str | Path,
    image_root: str | Path | None = None,
    *,
    clip_tolerance: float = DEFAULT_CLIP_TOLERANCE_PX,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    check_files: bool = True,
    class_names: list[str] | None = None,
) -> DetectionDataset:
    """Read and validate a COCO detection dataset; raise DatasetValidationError listing every problem.

    Images resolve under `image_root` (default: the JSON file's folder). `class_names`, when given,
    fixes the label order (a validation set must use the training set's labels).
    """
    source = "annotations"
    if not isinstance(coco, dict):
        path = Path(coco)
        source = str(path)
        image_root = Path(image_root) if image_root is not None else path.parent
        try:
            coco = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DatasetValidationError(source, [Problem("file", "annotation file not found")]) from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DatasetValidationError(source, [Problem("file", f"not valid JSON ({exc})")]) from None
    if not isinstance(coco, dict):
        raise DatasetValidationError(source, [Problem("file", "top level must be a JSON object")])
    if image_root is None:
        raise ValueError("image_root is required when the annotations are given as a dict")

    validator = _CocoValidator(coco, Path(image_root), clip_tolerance, max_pixels, check_files)
    category_ids, names = validator.categories()
    if class_names is not None:
        by_name = {n.lower(): cid for cid, n in zip(category_ids, names)}
        missing = [n for n in names if n.lower() not in {c.lower() for c in class_names}]
        if missing:
            validator.problem("categories", f"classes {missing} are not among the model's classes {class_names}")
        # a class the file lacks gets a unique negative id so its (empty) ground truth stays distinct
        category_ids = [by_name.get(n.lower(), -(i + 1)) for i, n in enumerate(class_names)]
        names = list(class_names)
    label_of = {cid: index + 1 for index, cid in enumerate(category_ids)}
    records = validator.images()
    declared_ids = {e.get("id") for e in coco.get("images", []) if isinstance(e, dict)}
    by_id = {r.id: r for r in records}
    boxes = validator.boxes(by_id, label_of, declared_ids)
    if validator.problems:
        raise DatasetValidationError(source, validator.problems)
    return DetectionDataset(names, category_ids, records, boxes, source)
