"""Draw labelled boxes on an image, as a museum app would show them: a colour per class, labels that
never overlap one another or leave the image."""

from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from artdet.detector.results import DetectionResult

Rect = tuple[float, float, float, float]  # x1, y1, x2, y2


def class_colour(label_id: int) -> tuple[int, int, int]:
    """Distinct hues for neighbouring label ids (golden-ratio steps around the colour wheel)."""
    r, g, b = colorsys.hsv_to_rgb((label_id * 0.618034) % 1.0, 0.85, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def _overlaps(a: Rect, b: Rect) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def place_label(box: Rect, size: tuple[float, float], image_size: tuple[int, int], taken: list[Rect]) -> Rect:
    """Where a label of `size` goes for `box`: inside the image, over no label in `taken` if there is room
    anywhere in its column, as close as that allows to just above the box (then its top edge, then below it).

    A free place, slid up until it touches something, starts at the image's top or at a placed label's
    bottom edge: trying those (and the preferred places) finds one whenever one exists."""
    width, height = size
    image_width, image_height = image_size
    x = min(max(0.0, box[0]), max(0.0, image_width - width))
    lowest = max(0.0, image_height - height)
    preferred = min(max(0.0, box[1] - height), lowest)
    options = {preferred, min(max(0.0, box[1]), lowest), min(max(0.0, box[3]), lowest), 0.0,
               *(t[3] for t in taken if t[3] <= lowest)}
    for y in sorted(options, key=lambda y: (abs(y - preferred), y)):
        rect = (x, y, x + width, y + height)
        if not any(_overlaps(rect, t) for t in taken):
            return rect
    return (x, preferred, x + width, preferred + height)  # no room left: overlap rather than vanish


def draw_detections(pixels: np.ndarray, result: DetectionResult) -> Image.Image:
    image = Image.fromarray(pixels).convert("RGB")
    if image.size != (result.width, result.height):
        image = image.resize((result.width, result.height))
    draw = ImageDraw.Draw(image)
    line = max(2, round(max(image.size) / 300))
    font = ImageFont.load_default(size=max(12, round(max(image.size) / 40)))
    for det in result.detections:
        draw.rectangle(det.box, outline=class_colour(det.label_id), width=line)
    taken: list[Rect] = []
    for det in sorted(result.detections, key=lambda d: -d.score):  # the surest labels get the best places
        text = f"{det.label} {det.score:.0%}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        rect = place_label(det.box, (right - left + 2 * line, bottom - top + 2 * line), image.size, taken)
        taken.append(rect)
        draw.rectangle(rect, fill=class_colour(det.label_id))
        draw.text((rect[0] + line - left, rect[1] + line - top), text, fill=(0, 0, 0), font=font)
    return image


def save_drawing(pixels: np.ndarray, result: DetectionResult, out: str | Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    draw_detections(pixels, result).save(out)
    return out
