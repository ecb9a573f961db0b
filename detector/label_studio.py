"""Label Studio exports (JSON, JSON-MIN) converted to COCO for the one validator.

Rectangles are stored in percent of the image Label Studio showed (upright, as browsers show it), with the
image's `original_width` / `original_height` beside them. A task's annotation is its ground-truth one, else
its latest; cancelled (skipped) annotations count as none, and tasks without an annotation are left out as
not labelled yet. An annotation with no rectangles is an image without objects.
"""

from __future__ import annotations

import math
from typing import Any

from artdet.detector.dataset import DatasetValidationError, Problem
from artdet.detector.errors import show
from artdet.detector.local_images import LocalImages, looks_like_image_reference

RECTANGLE = "rectanglelabels"
# region types a box detector cannot learn from: refused rather than silently dropped
OTHER_REGIONS = {"polygonlabels", "keypointlabels", "brushlabels", "ellipselabels", "polygon", "keypoint", "brush",
                 "ellipse", "rectangle"}


def export_kind(data: Any) -> str | None:
    """"json" (Label Studio's full export), "json-min", or None when `data` is neither."""
    if not isinstance(data, list) or not data or not all(isinstance(item, dict) for item in data):
        return None
    if all(isinstance(item.get("data"), dict) and ("annotations" in item or "predictions" in item)
           for item in data):
        return "json"
    if any(_min_regions(item) for item in data) or all(_image_field(item)[0] for item in data):
        return "json-min"
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _image_field(fields: dict[str, Any]) -> tuple[str | None, str | None]:
    """(the image reference among a task's data fields, why none)."""
    if looks_like_image_reference(fields.get("image")):
        return fields["image"], None
    found = [value for value in fields.values() if looks_like_image_reference(value)]
    if len(found) == 1:
        return found[0], None
    return None, ("no image reference in the task's data" if not found
                  else f"{len(found)} fields look like image references; name the image field 'image'")


def _min_regions(item: dict[str, Any]) -> list[dict[str, Any]]:
    """JSON-MIN flattens each control's results into a list under the control's name."""
    return [region for value in item.values() if isinstance(value, list)
            for region in value if isinstance(region, dict) and RECTANGLE in region]


def _chosen_annotation(task: dict[str, Any]) -> dict[str, Any] | None:
    annotations = [a for a in task["annotations"] if isinstance(a, dict) and not a.get("was_cancelled")]
    if not annotations:
        return None
    return max(annotations, key=lambda a: (bool(a.get("ground_truth")), str(a.get("updated_at") or ""),
                                           _number(a.get("id")) or 0.0))


class _Converter:
    def __init__(self, source: str, images: LocalImages):
        self.source = source
        self.images = images
        self.problems: list[Problem] = []
        self.coco_images: list[dict[str, Any]] = []
        self.boxes: list[tuple[int, str, list[float]]] = []
        self.unlabelled = 0

    def region(self, where: str, value: dict[str, Any], size: dict[str, float]) -> tuple[str, list[float]] | None:
        x, y, w, h = (_number(value.get(k)) for k in ("x", "y", "width", "height"))
        labels = value.get(RECTANGLE)
        if None in (x, y, w, h):
            self.problems.append(Problem(where, "a rectangle needs numeric x, y, width and height (percent)"))
            return None
        rotation = _number(value.get("rotation", 0)) or 0.0
        if abs(rotation) > 1e-6:
            self.problems.append(Problem(where, f"a rectangle rotated by {rotation:g}°: detectors here take upright "
                                                "boxes; set its rotation to 0 in Label Studio"))
            return None
        if not isinstance(labels, list) or len(labels) != 1 or not isinstance(labels[0], str) or not labels[0]:
            self.problems.append(Problem(where, f"a rectangle needs exactly one label, got {show(labels, 60)}"))
            return None
        width, height = size["width"], size["height"]
        return labels[0], [x * width / 100, y * height / 100, w * width / 100, h * height / 100]

    def image_size(self, where: str, regions: list[dict[str, Any]]) -> dict[str, float] | None:
        sizes = {(_number(r.get("original_width")), _number(r.get("original_height"))) for r in regions}
        if len(sizes) != 1 or any(v is None or v <= 0 for v in next(iter(sizes))):
            self.problems.append(Problem(where, "rectangles need one positive original_width and original_height "
                                                f"for the image, got {show(sorted(sizes, key=str), 60)}"))
            return None
        width, height = next(iter(sizes))
        return {"width": width, "height": height}

    def add(self, where: str, reference: Any, regions: list[tuple[dict[str, Any], dict[str, Any]]],
            refused: list[str]) -> None:
        """One labelled task: its image reference and its (region, value) pairs."""
        for kind in sorted(set(refused)):
            self.problems.append(Problem(where, f"{kind} regions cannot train a box detector; "
                                                "remove them or export rectangles only"))
        if not isinstance(reference, str):
            self.problems.append(Problem(where, f"the image reference must be a string, got {show(reference, 60)}"))
            return
        file_name, why = self.images.find(reference)
        if file_name is None:
            self.problems.append(Problem(where, why or "image not found"))
            return
        image_id = len(self.coco_images) + 1
        entry: dict[str, Any] = {"id": image_id, "file_name": file_name}
        if regions:
            size = self.image_size(where, [region for region, _ in regions])
            if size is None:
                return
            entry.update(width=round(size["width"]), height=round(size["height"]))
            for index, (region, value) in enumerate(regions):
                box = self.region(f"{where}, region {show(region.get('id', index), 40)}", value, size)
                if box is not None:
                    self.boxes.append((image_id, *box))
        self.coco_images.append(entry)

    def coco(self) -> dict[str, Any]:
        if self.problems:
            raise DatasetValidationError(self.source, self.problems)
        names = sorted({label for _, label, _ in self.boxes})
        ids = {name: index + 1 for index, name in enumerate(names)}
        return {"images": self.coco_images,
                "annotations": [{"id": i + 1, "image_id": image_id, "category_id": ids[label], "bbox": bbox,
                                 "area": bbox[2] * bbox[3], "iscrowd": 0}
                                for i, (image_id, label, bbox) in enumerate(self.boxes)],
                "categories": [{"id": ids[name], "name": name} for name in names]}


def label_studio_to_coco(data: Any, source: str, images: LocalImages) -> tuple[dict[str, Any], list[str]]:
    """COCO for a Label Studio JSON or JSON-MIN export, and notes on what was left out; every problem is
    reported together as DatasetValidationError naming the task."""
    kind = export_kind(data)
    if kind is None:
        raise DatasetValidationError(source, [Problem("file", "not a Label Studio JSON or JSON-MIN export")])
    converter = _Converter(source, images)
    for index, task in enumerate(data):
        where = f"task {show(task.get('id', index), 40)}"
        if kind == "json":
            if not isinstance(task.get("annotations", []), list):
                converter.problems.append(Problem(where, f"annotations must be a list, got "
                                                         f"{show(task['annotations'], 40)}"))
                continue
            task.setdefault("annotations", [])
            annotation = _chosen_annotation(task)
            if annotation is None:
                converter.unlabelled += 1
                continue
            results = annotation.get("result")
            if not isinstance(results, list):
                converter.problems.append(Problem(where, f"the annotation's result must be a list, got "
                                                         f"{show(results, 60)}"))
                continue
            results = [r for r in results if isinstance(r, dict)]
            if any(_number(r.get("image_rotation", 0)) for r in results):
                converter.problems.append(Problem(where, "the image was rotated in Label Studio (image_rotation); "
                                                         "rotate the file itself instead"))
                continue
            regions = [(r, r.get("value") if isinstance(r.get("value"), dict) else {}) for r in results
                       if r.get("type") == RECTANGLE]
            refused = [str(r.get("type")) for r in results if r.get("type") in OTHER_REGIONS]
            reference, why = _image_field(task["data"])
        else:
            if "annotation_id" in task and task["annotation_id"] is None:  # exported with all tasks: not labelled
                converter.unlabelled += 1
                continue
            regions = [(region, region) for region in _min_regions(task)]
            refused = []
            reference, why = _image_field({k: v for k, v in task.items() if not isinstance(v, list)})
        if reference is None:
            converter.problems.append(Problem(where, why or "no image"))
            continue
        converter.add(where, reference, regions, refused)
    notes = [f"{converter.unlabelled} task(s) without an annotation left out (not labelled yet)"] \
        if converter.unlabelled else []
    return converter.coco(), notes


def rectangle_control(label_config: str) -> tuple[str, str, list[str], str]:
    """(from_name, to_name, labels, the task data key its image comes from) of the project's RectangleLabels
    control; InvalidArgument when it has none."""
    import xml.etree.ElementTree as ET

    from artdet.detector.errors import InvalidArgument

    try:
        root = ET.fromstring(label_config)
    except (ET.ParseError, ValueError, LookupError, RecursionError):
        raise InvalidArgument("label_config: not a Label Studio labelling configuration (XML)") from None
    for control in root.iter("RectangleLabels"):
        name, target = control.get("name"), control.get("toName")
        if name and target:
            target = target.split(",")[0]
            image = next((i for i in root.iter("Image") if i.get("name") == target), None)
            value = (image.get("value") or "") if image is not None else ""
            if not value.startswith("$") or len(value) < 2:
                raise InvalidArgument(f"label_config: the <Image name={target!r}> the rectangles label needs "
                                      "value=\"$field\"")
            return name, target, [label.get("value") or "" for label in control.iter("Label")], value[1:]
    raise InvalidArgument("label_config: no <RectangleLabels name=... toName=...> control to predict boxes for")


def rectangle_results(detections, width: int, height: int, from_name: str, to_name: str) -> list[dict[str, Any]]:
    """Detections (boxes in the upright image's pixels) as Label Studio rectangle results, in percent."""
    return [{"id": f"artdet-{index}", "from_name": from_name, "to_name": to_name, "type": RECTANGLE,
             "original_width": width, "original_height": height, "image_rotation": 0, "score": round(d.score, 4),
             "value": {"x": 100 * d.box[0] / width, "y": 100 * d.box[1] / height,
                       "width": 100 * (d.box[2] - d.box[0]) / width, "height": 100 * (d.box[3] - d.box[1]) / height,
                       "rotation": 0, RECTANGLE: [d.label]}}
            for index, d in enumerate(detections)]
