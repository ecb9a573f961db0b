"""Seeded synthetic scenes with exact COCO boxes: shapes on textured backgrounds.

Used by tests (so the project stands alone) and by quick demos.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, box: tuple[int, int, int, int], colour) -> None:
    x1, y1, x2, y2 = box
    if shape == "circle":
        draw.ellipse(box, fill=colour)
    elif shape == "square":
        draw.rectangle(box, fill=colour)
    elif shape == "triangle":
        draw.polygon([(x1, y2), ((x1 + x2) // 2, y1), (x2, y2)], fill=colour)
    elif shape == "cross":
        w, h = x2 - x1, y2 - y1
        draw.rectangle((x1 + w // 3, y1, x2 - w // 3, y2), fill=colour)
        draw.rectangle((x1, y1 + h // 3, x2, y2 - h // 3), fill=colour)
    else:
        raise ValueError(f"unknown shape {shape!r}")


def make_scene(rng: random.Random, width: int, height: int, classes: tuple[str, ...], max_objects: int):
    """One image and its objects as (class name, [x, y, w, h])."""
    gradient = np.linspace(0, 1, width)[None, :, None] * np.array(rng.choice([(90, 40, 20), (20, 60, 90)]))
    base = np.array([rng.randint(60, 160) for _ in range(3)])[None, None, :]
    noise = np.random.default_rng(rng.randint(0, 2**31)).normal(0, 6, (height, width, 3))
    pixels = np.clip(base + gradient + noise, 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)
    objects = []
    for _ in range(rng.randint(1, max_objects)):
        side = rng.randint(min(width, height) // 4, min(width, height) // 2)
        x, y = rng.randint(0, width - side), rng.randint(0, height - side)
        shape = rng.choice(classes)
        colour = tuple(rng.randint(180, 255) if i == rng.randint(0, 2) else rng.randint(0, 80) for i in range(3))
        _draw_shape(draw, shape, (x, y, x + side - 1, y + side - 1), colour)
        objects.append((shape, [float(x), float(y), float(side), float(side)]))
    return image, objects


def write_shapes_dataset(root: str | Path, images: int = 8, size: tuple[int, int] = (160, 128), seed: int = 0,
                         classes: tuple[str, ...] = ("circle", "square"), max_objects: int = 1,
                         name: str = "annotations.json") -> Path:
    """Write JPEGs under root/images and a COCO file root/<name>; returns the COCO file's path.

    Objects are drawn without overlap checks, so keep `max_objects` at 1 where exact visibility matters.
    """
    rng = random.Random(seed)

    def scenes():
        for image_id in range(1, images + 1):
            width, height = size if image_id % 3 else size[::-1]  # mix landscape and portrait
            image, objects = make_scene(rng, width, height, classes, max_objects)
            yield f"images/{seed}_{image_id:05d}.jpg", image, objects

    return write_coco_scenes(root, name, classes, scenes())


def write_coco_scenes(root: str | Path, name: str, classes: tuple[str, ...], scenes) -> Path:
    """Save (file name, image, [(class, [x, y, w, h])]) scenes as JPEGs and one COCO file root/name."""
    root = Path(root)
    ids = {c: i + 1 for i, c in enumerate(classes)}
    coco = {"images": [], "annotations": [], "categories": [{"id": i, "name": c} for c, i in ids.items()]}
    for image_id, (file_name, image, objects) in enumerate(scenes, start=1):
        (root / file_name).parent.mkdir(parents=True, exist_ok=True)
        image.save(root / file_name, quality=92)
        coco["images"].append({"id": image_id, "file_name": file_name, "width": image.width,
                               "height": image.height})
        for shape, bbox in objects:
            coco["annotations"].append({"id": len(coco["annotations"]) + 1, "image_id": image_id,
                                        "category_id": ids[shape], "bbox": bbox, "area": bbox[2] * bbox[3],
                                        "iscrowd": 0})
    path = root / name
    path.write_text(json.dumps(coco))
    return path
