"""CVAT's "CVAT for images 1.1" XML: read into COCO for the one validator, and written as pre-annotations.

Boxes are in upright image pixels (xtl, ytl, xbr, ybr); the task's labels are listed under <meta>, images by
the names CVAT keeps them under (relative to the export's images/ folder). Every image of a task is in the
export; one without boxes is an image without objects.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from typing import Any, Iterable
from xml.sax.saxutils import escape, quoteattr

from artdet.detector.dataset import DatasetValidationError, Problem
from artdet.detector.errors import show

# shapes a box detector cannot learn from: refused rather than silently dropped
OTHER_SHAPES = ("polygon", "polyline", "points", "mask", "ellipse", "cuboid", "skeleton")
ANNOTATION_FILE = "annotations.xml"


def is_cvat_xml(content: bytes) -> bool:
    head = content[:4096].lstrip()
    return b"<annotations" in head and (b"<version>1.1</version>" in content[:8192] or b"<meta" in head)


def _number(value: str | None) -> float | None:
    try:
        number = float(value) if value is not None else None
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) else None


def cvat_xml_to_coco(content: bytes, source: str) -> dict[str, Any]:
    """COCO for a CVAT-for-images XML file; every problem reported together, naming the image."""
    try:
        root = ET.fromstring(content)
    except ET.ParseError as exc:
        raise DatasetValidationError(source, [Problem("file", f"not well-formed XML ({exc})")]) from None
    except (ValueError, LookupError, RecursionError) as exc:
        raise DatasetValidationError(source, [Problem("file", f"not readable XML ({type(exc).__name__})")]) from None
    if root.tag != "annotations":
        raise DatasetValidationError(source, [Problem("file", f"the root element is <{root.tag[:40]}>, not CVAT's "
                                                              "<annotations>")])
    problems: list[Problem] = []
    categories: dict[str, int] = {}
    for label in root.iterfind("./meta//labels/label"):
        name = (label.findtext("name") or "").strip()
        if name and (label.findtext("type") or "rectangle").strip() in ("rectangle", "any", "bbox"):
            categories.setdefault(name, len(categories) + 1)
    if root.find("track") is not None:
        problems.append(Problem("file", "<track> elements are video annotations; export the task's images as "
                                        "'CVAT for images 1.1'"))
    images, annotations = [], []
    for index, image in enumerate(root.iter("image")):
        name = image.get("name")
        where = f"image {show(image.get('id', index), 20)} ({show(name, 60)})"
        width, height = _number(image.get("width")), _number(image.get("height"))
        if not name or width is None or height is None or width <= 0 or height <= 0:
            problems.append(Problem(where, "an <image> needs a name and positive width and height"))
            continue
        image_id = len(images) + 1
        images.append({"id": image_id, "file_name": name, "width": round(width), "height": round(height)})
        refused = sorted({child.tag for child in image if child.tag in OTHER_SHAPES})
        for tag in refused:
            problems.append(Problem(where, f"<{tag}> shapes cannot train a box detector; remove them or export "
                                           "boxes only"))
        for box in image.iter("box"):
            label = (box.get("label") or "").strip()
            x1, y1, x2, y2 = (_number(box.get(k)) for k in ("xtl", "ytl", "xbr", "ybr"))
            if not label or None in (x1, y1, x2, y2):
                problems.append(Problem(where, "a <box> needs a label and numeric xtl, ytl, xbr, ybr"))
                continue
            rotation = _number(box.get("rotation", "0")) or 0.0
            if abs(rotation) > 1e-6:
                problems.append(Problem(where, f"a box rotated by {rotation:g}°: detectors here take upright boxes"))
                continue
            category_id = categories.setdefault(label, len(categories) + 1)
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": category_id,
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
    if not images and not problems:
        problems.append(Problem("file", "no <image> elements"))
    if problems:
        raise DatasetValidationError(source, problems)
    return {"images": images, "annotations": annotations,
            "categories": [{"id": cid, "name": name} for name, cid in categories.items()]}


def cvat_xml(labels: Iterable[str],
             images: Iterable[tuple[str, int, int, list[tuple[str, float, float, float, float]]]]) -> bytes:
    """CVAT for images 1.1 XML that CVAT imports as a task's annotations: `images` are (name, width, height,
    [(label, x1, y1, x2, y2)]) in upright pixels, names as the task holds the images."""
    labels = list(labels)
    lines = ['<?xml version="1.0" encoding="utf-8"?>', "<annotations>", "  <version>1.1</version>", "  <meta>",
             "    <task>", "      <labels>"]
    lines += [f"        <label><name>{escape(name)}</name><type>rectangle</type><attributes/></label>"
              for name in labels]
    lines += ["      </labels>", "    </task>", "  </meta>"]
    for index, (name, width, height, boxes) in enumerate(images):
        lines.append(f"  <image id=\"{index}\" name={quoteattr(name)} width=\"{width}\" height=\"{height}\">")
        for label, x1, y1, x2, y2 in boxes:
            lines.append(f"    <box label={quoteattr(label)} source=\"auto\" occluded=\"0\" xtl=\"{x1:.2f}\" "
                         f"ytl=\"{y1:.2f}\" xbr=\"{x2:.2f}\" ybr=\"{y2:.2f}\" z_order=\"0\"></box>")
        lines.append("  </image>")
    lines.append("</annotations>")
    return ("\n".join(lines) + "\n").encode("utf-8")

