"""Decode images the way people see them: EXIF-upright, 8-bit RGB, with a pixel limit.

Used by training and by the torch-free serving path, so it imports only Pillow and numpy.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from detector.errors import InvalidArgument

DEFAULT_MAX_PIXELS = 64_000_000

# Pillow's own bomb check fires only at twice its limit and after a warning; we check first.
Image.MAX_IMAGE_PIXELS = None

_EXIF_ORIENTATION_TAG = 0x0112
_SIDEWAYS_ORIENTATIONS = {5, 6, 7, 8}


class ImageDecodeError(InvalidArgument):
    """An image that cannot be used: unreadable, truncated, unsupported or too large."""

    def __init__(self, source: str, reason: str):
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


class ImageTooLargeError(ImageDecodeError):
    pass


@dataclass(frozen=True)
class ImageSize:
    width: int
    height: int


def _open(data: bytes | str | os.PathLike, source: str) -> Image.Image:
    try:
        if isinstance(data, (bytes, bytearray, memoryview)):
            return Image.open(io.BytesIO(bytes(data)))
        return Image.open(data)
    except FileNotFoundError:
        raise ImageDecodeError(source, "file not found") from None
    except UnidentifiedImageError:
        raise ImageDecodeError(source, "not a recognised image format (JPEG, PNG, WebP, TIFF, BMP, ...)") from None
    except OSError as exc:
        raise ImageDecodeError(source, f"cannot be read ({exc})") from None


def _upright_size(image: Image.Image) -> ImageSize:
    width, height = image.size
    try:
        orientation = image.getexif().get(_EXIF_ORIENTATION_TAG, 1)
    except Exception:  # malformed EXIF blocks are common in the wild; treat as upright
        orientation = 1
    if orientation in _SIDEWAYS_ORIENTATIONS:
        width, height = height, width
    return ImageSize(width, height)


def _check_pixels(size: ImageSize, max_pixels: int, source: str) -> None:
    if size.width * size.height > max_pixels:
        raise ImageTooLargeError(
            source, f"{size.width}x{size.height} = {size.width * size.height} pixels exceeds the limit of {max_pixels}"
        )


def read_image_size(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageSize:
    """Upright size from the header only, without decoding pixels."""
    source = str(path)
    with _open(path, source) as image:
        size = _upright_size(image)
    _check_pixels(size, max_pixels, source)
    return size


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        low, high = float(array.min()), float(array.max())
        scaled = np.zeros_like(array) if high <= low else (array - low) * (255.0 / (high - low))
        return Image.fromarray(scaled.astype(np.uint8), mode="L").convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def decode_upright(
    data: bytes | str | os.PathLike,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    source: str | None = None,
    draft_for: Callable[[ImageSize], tuple[int, int] | None] | None = None,
) -> tuple[np.ndarray, ImageSize]:
    """Decode to an upright HxWx3 uint8 RGB array; also returns the full upright size.

    `draft_for(upright size)` may return the (upright width, height) the caller needs, so JPEG decoding
    skips detail that would be thrown away (DCT scaling): the array is then at least that large in each
    dimension but may be smaller than the file, whose size the returned ImageSize keeps.
    """
    source = source or (str(data) if isinstance(data, (str, os.PathLike)) else "image")
    image = _open(data, source)
    try:
        size = _upright_size(image)
        _check_pixels(size, max_pixels, source)
        wanted = draft_for(size) if draft_for is not None and image.format == "JPEG" else None
        if wanted is not None:
            image.draft("RGB", wanted if size.width == image.size[0] else wanted[::-1])
        image.load()
        image = ImageOps.exif_transpose(image)
        return np.asarray(_to_rgb(image)), size
    except ImageDecodeError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageDecodeError(source, f"corrupt or truncated image data ({exc})") from None
    finally:
        image.close()


def decode_image(
    data: bytes | str | os.PathLike,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    source: str | None = None,
    draft_for: Callable[[ImageSize], tuple[int, int] | None] | None = None,
) -> np.ndarray:
    return decode_upright(data, max_pixels, source, draft_for)[0]


def resolve_inside(root: Path, file_name: str) -> Path:
    """Join `file_name` under `root`, refusing absolute paths and `..` escapes."""
    candidate = Path(file_name)
    if candidate.is_absolute() or ".." in candidate.parts:
        raise ValueError(f"file name {file_name!r} must be a relative path inside the image root")
    return root / candidate
