"""Draw labelled boxes on an image, as a museum app would show them."""

from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from detector.inference import DetectionResult


def _colour(label_id: int) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb((label_id * 0.618034) % 1.0, 0.85, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def draw_detections(pixels: np.ndarray, result: DetectionResult) -> Image.Image:
    image = Image.fromarray(pixels).convert("RGB")
    if image.size != (result.width, result.height):
        image = image.resize((result.width, result.height))
    draw = ImageDraw.Draw(image)
    line = max(2, round(max(image.size) / 300))
    font = ImageFont.load_default(size=max(12, round(max(image.size) / 40)))
    for det in result.detections:
        colour = _colour(det.label_id)
        x1, y1, x2, y2 = det.box
        draw.rectangle((x1, y1, x2, y2), outline=colour, width=line)
        text = f"{det.label} {det.score:.0%}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        tw, th = right - left, bottom - top
        ty = y1 - th - 2 * line if y1 - th - 2 * line >= 0 else y1
        draw.rectangle((x1, ty, x1 + tw + 2 * line, ty + th + 2 * line), fill=colour)
        draw.text((x1 + line - left, ty + line - top), text, fill=(0, 0, 0), font=font)
    return image


def save_drawing(pixels: np.ndarray, result: DetectionResult, out: str | Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    draw_detections(pixels, result).save(out)
    return out
