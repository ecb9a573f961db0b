"""Seeded scenes in two looks, with exact COCO boxes: a stand-in for "photo-trained detector → artworks".

- "photo" (domain A): smooth colour gradients with mild noise; crisp, filled, shaded shapes.
- "photo-mild" (B-similar): A's look changed only mildly (warmer cast, softer shading, a little blur).
- "painting" (domain B): posterised palette, wobbly outlines, hatched or outline-only fills, canvas
  texture, a colour cast and many short brush strokes over everything; adds a class A never has (star).
- "engraving" (held out from `auto`'s calibration): ink on paper, no colour: cross-hatched shapes, aged
  paper with grain and fibres; the painting classes.
- "fresco" (held out from `auto`, and from the rule change the engraving cells led to): pigment on lime plaster:
  a faded, low-contrast palette, mottled plaster, cracks and patches of lost paint; the painting classes.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from artdet.tools.experiments.synthetic import write_coco_scenes

PHOTO_CLASSES = ("circle", "square", "triangle", "cross")
PAINTING_CLASSES = PHOTO_CLASSES + ("star",)
DOMAINS = ("photo", "photo-mild", "painting", "engraving", "fresco")
ART_DOMAINS = ("painting", "engraving", "fresco")  # they add the star class


def _outline(shape: str, cx: float, cy: float, r: float, rng: random.Random, wobble: float) -> list[tuple]:
    if shape == "circle":
        points = [(math.cos(a), math.sin(a)) for a in np.linspace(0, 2 * math.pi, 36, endpoint=False)]
    elif shape == "square":
        points = [(-0.8, -0.8), (0.8, -0.8), (0.8, 0.8), (-0.8, 0.8)]
    elif shape == "triangle":
        points = [(0, -1), (0.95, 0.8), (-0.95, 0.8)]
    elif shape == "cross":
        a, b = 0.3, 0.9
        points = [(-a, -b), (a, -b), (a, -a), (b, -a), (b, a), (a, a), (a, b), (-a, b), (-a, a), (-b, a), (-b, -a),
                  (-a, -a)]
    elif shape == "star":
        points = [((1.0 if i % 2 == 0 else 0.42) * math.sin(i * math.pi / 5),
                   -(1.0 if i % 2 == 0 else 0.42) * math.cos(i * math.pi / 5)) for i in range(10)]
    else:
        raise ValueError(f"unknown shape {shape!r}")
    if wobble:  # densify, then jitter the radius: hand-drawn outlines
        dense = []
        for (x1, y1), (x2, y2) in zip(points, points[1:] + points[:1]):
            for t in np.linspace(0, 1, 4, endpoint=False):
                dense.append((x1 + (x2 - x1) * t, y1 + (y2 - y1) * t))
        points = [(x * (1 + rng.uniform(-wobble, wobble)), y * (1 + rng.uniform(-wobble, wobble))) for x, y in dense]
    return [(cx + x * r, cy + y * r) for x, y in points]


def _background(rng: random.Random, width: int, height: int, domain: str) -> np.ndarray:
    start = np.array([rng.randint(40, 200) for _ in range(3)], dtype=np.float64)
    end = np.array([rng.randint(40, 200) for _ in range(3)], dtype=np.float64)
    t = np.linspace(0, 1, width)[None, :, None] * rng.uniform(0.3, 1) + \
        np.linspace(0, 1, height)[:, None, None] * rng.uniform(0, 0.7)
    t = t / t.max()
    pixels = start + (end - start) * t
    noise = np.random.default_rng(rng.randint(0, 2**31)).normal(0, 4 if domain != "painting" else 10, pixels.shape)
    return np.clip(pixels + noise, 0, 255)


def _painting_finish(image: Image.Image, rng: random.Random) -> Image.Image:
    width, height = image.size
    draw = ImageDraw.Draw(image)
    for _ in range(width * height // 90):  # short brush strokes over everything
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        angle, length = rng.uniform(0, math.pi), rng.uniform(3, 9)
        colour = image.getpixel((int(x) % width, int(y) % height))
        shade = tuple(int(np.clip(c + rng.randint(-35, 35), 0, 255)) for c in colour)
        draw.line((x, y, x + length * math.cos(angle), y + length * math.sin(angle)), fill=shade,
                  width=rng.randint(1, 3))
    pixels = np.asarray(image).astype(np.float64)
    yy, xx = np.mgrid[0:height, 0:width]
    canvas = 10 * np.sin(xx * 1.7) * np.sin(yy * 1.7)  # canvas weave
    cast = np.array([rng.uniform(0.85, 1.2), rng.uniform(0.8, 1.05), rng.uniform(0.6, 0.9)])
    pixels = np.clip((pixels + canvas[..., None]) * cast, 0, 255).astype(np.uint8)
    levels = rng.choice([3, 4])  # posterised palette
    step = 256 // (2 ** levels)
    pixels = (pixels // step) * step + step // 2
    return Image.fromarray(pixels.astype(np.uint8))


def _engraving_finish(image: Image.Image, rng: random.Random) -> Image.Image:
    width, height = image.size
    ink = np.asarray(image.convert("L")).astype(np.float64)
    noise = np.random.default_rng(rng.randint(0, 2**31))
    fibres = np.cumsum(noise.normal(0, 1.2, (height, width)), axis=1)  # streaks along the paper's grain
    paper = rng.uniform(215, 240) + noise.normal(0, 6, (height, width)) + (fibres - fibres.mean()) * 0.15
    pixels = np.minimum(paper, ink)
    tint = np.array([1.0, rng.uniform(0.95, 0.99), rng.uniform(0.86, 0.93)])  # aged paper, still no colour
    return Image.fromarray(np.clip(pixels[..., None] * tint, 0, 255).astype(np.uint8)).filter(
        ImageFilter.GaussianBlur(0.5))


def _plaster(rng: random.Random, width: int, height: int) -> np.ndarray:
    noise = np.random.default_rng(rng.randint(0, 2**31))
    base = np.array([rng.uniform(205, 230), rng.uniform(190, 212), rng.uniform(165, 192)])
    coarse = np.asarray(Image.fromarray(noise.normal(128, 40, (height // 16 + 1, width // 16 + 1)).clip(0, 255)
                                        .astype(np.uint8)).resize((width, height), Image.BICUBIC), np.float64)
    mottling = (coarse - 128) * 0.25 + noise.normal(0, 3, (height, width))
    return np.clip(base + mottling[..., None], 0, 255)


def _faded(colour: tuple[int, ...], plaster: np.ndarray) -> tuple[int, ...]:
    """A pigment that has lost most of its strength into the plaster."""
    return tuple(int(0.45 * c + 0.55 * p) for c, p in zip(colour, plaster.reshape(-1, 3).mean(axis=0)))


def _fresco_finish(image: Image.Image, plaster: np.ndarray, rng: random.Random) -> Image.Image:
    width, height = image.size
    pixels = np.asarray(image).astype(np.float64)
    loss = Image.new("L", image.size, 0)  # patches where the paint has flaked off to the plaster
    loss_draw = ImageDraw.Draw(loss)
    for _ in range(rng.randint(2, 5)):
        cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(3, min(width, height) * 0.06)
        loss_draw.polygon(_outline("circle", cx, cy, r, rng, 0.35), fill=255)
    lost = np.asarray(loss.filter(ImageFilter.GaussianBlur(1)), np.float64)[..., None] / 255
    pixels = pixels * (1 - lost) + plaster * lost
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(rng.randint(4, 9)):  # cracks: wandering thin dark lines
        x, y, angle = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(0, 2 * math.pi)
        points = [(x, y)]
        for _step in range(rng.randint(6, 20)):
            angle += rng.uniform(-0.7, 0.7)
            x, y = x + 5 * math.cos(angle), y + 5 * math.sin(angle)
            points.append((x, y))
        draw.line(points, fill=tuple(rng.randint(95, 130) for _ in range(3)), width=1)
    pixels = np.asarray(image.filter(ImageFilter.GaussianBlur(0.6))).astype(np.float64)
    return Image.fromarray(np.clip(128 + (pixels - 128) * 0.8 + 20, 0, 255).astype(np.uint8))  # low contrast, chalky


def render_scene(rng: random.Random, domain: str, width: int, height: int, classes: tuple[str, ...],
                 max_objects: int = 3) -> tuple[Image.Image, list[tuple[str, list[float]]]]:
    if domain not in DOMAINS:
        raise ValueError(f"domain must be one of {DOMAINS}, got {domain!r}")
    painting = domain in ART_DOMAINS
    engraving, fresco = domain == "engraving", domain == "fresco"
    plaster = _plaster(rng, width, height) if fresco else None
    image = Image.fromarray(np.full((height, width, 3), 255, np.uint8) if engraving
                            else plaster.astype(np.uint8) if fresco
                            else _background(rng, width, height, domain).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    objects: list[tuple[str, list[float]]] = []
    placed: list[tuple[float, float, float]] = []
    for _ in range(rng.randint(1, max_objects)):
        for _attempt in range(20):  # keep objects apart so every box is fully visible
            r = rng.uniform(min(width, height) * 0.12, min(width, height) * 0.24)
            cx, cy = rng.uniform(r, width - r), rng.uniform(r, height - r)
            if all(math.hypot(cx - x, cy - y) > r + pr + 4 for x, y, pr in placed):
                break
        else:
            continue
        placed.append((cx, cy, r))
        shape = rng.choice(classes)
        points = _outline(shape, cx, cy, r, rng, 0.07 if painting else 0.0)
        colour = (tuple(rng.randint(0, 60) for _ in range(3)) if engraving  # ink
                  else tuple(rng.randint(0, 255) for _ in range(3)))
        if fresco:
            colour = _faded(colour, plaster)
        style = ("hatched" if engraving else rng.choice(["filled", "outline"]) if fresco
                 else rng.choice(["filled", "hatched", "outline"])) if painting else "filled"
        if style == "filled":
            draw.polygon(points, fill=colour)
            if not painting:  # shading: a lighter, smaller copy towards the top-left
                light = tuple(min(255, c + (40 if domain == "photo" else 20)) for c in colour)
                inner = [(cx + (x - cx) * 0.6 - r * 0.12, cy + (y - cy) * 0.6 - r * 0.12) for x, y in points]
                draw.polygon(inner, fill=light)
        elif style == "hatched":
            draw.polygon(points, outline=colour, width=3)
            mask = Image.new("L", image.size, 0)
            ImageDraw.Draw(mask).polygon(points, fill=255)
            hatch = Image.new("L", image.size, 0)
            hatch_draw = ImageDraw.Draw(hatch)
            for offset in range(-height, width, 6):
                hatch_draw.line((offset, 0, offset + height, height), fill=255, width=2)
                if engraving:  # cross-hatching
                    hatch_draw.line((offset, height, offset + height, 0), fill=255, width=1)
            image.paste(Image.new("RGB", image.size, colour), (0, 0), Image.fromarray(
                np.minimum(np.asarray(mask), np.asarray(hatch))))
            draw = ImageDraw.Draw(image)
        else:
            draw.polygon(points, outline=colour, width=4)
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        x1, y1 = max(0.0, min(xs) - 1), max(0.0, min(ys) - 1)
        x2, y2 = min(float(width), max(xs) + 1), min(float(height), max(ys) + 1)
        objects.append((shape, [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)]))
    if engraving:
        image = _engraving_finish(image, rng)
    elif fresco:
        image = _fresco_finish(image, plaster, rng)
    elif painting:
        image = _painting_finish(image, rng)
    elif domain == "photo-mild":
        pixels = np.asarray(image.filter(ImageFilter.GaussianBlur(0.8))).astype(np.float64) * [1.06, 1.0, 0.9]
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    return image, objects


def write_scenes(root: str | Path, domain: str, images: int, size: int = 192, seed: int = 0,
                 classes: tuple[str, ...] | None = None, name: str = "annotations.json") -> Path:
    """Write `images` scenes as JPEGs under root/images and a COCO file root/name; returns its path."""
    classes = classes or (PAINTING_CLASSES if domain in ART_DOMAINS else PHOTO_CLASSES)
    rng = random.Random(f"{domain}-{seed}")
    stem = Path(name).stem

    def scenes():
        for image_id in range(1, images + 1):
            image, objects = render_scene(rng, domain, size, size, classes)
            yield f"images/{stem}/{image_id:05d}.jpg", image, objects

    return write_coco_scenes(root, name, classes, scenes())
