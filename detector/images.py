"""The one image-decoding gate: EXIF-upright, 8-bit RGB, a pixel limit checked before any pixel work.

Every image the project reads goes through here: the size the file declares is checked against the
limit right after its header is read, before EXIF or pixels; only known raster formats are opened;
decoding can be reduced to the size the caller needs and can draw on a shared pixel budget, so
concurrent decodes of large images stay within a bounded amount of memory.

Used by training and by the torch-free serving path, so it imports only Pillow and numpy.
"""

from __future__ import annotations

import io
import os
import struct
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from PIL import Image, UnidentifiedImageError

from artdet.detector.errors import InvalidArgument, redact_paths

DEFAULT_MAX_PIXELS = 64_000_000
# Raster formats only: Pillow's other plugins (EPS runs Ghostscript, for one) are never reached.
FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF")  # JPEG includes MPO (phone cameras)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".mpo"}  # files of FORMATS

# Pillow's own bomb check fires only at twice its limit and after a warning; the gate checks first.
Image.MAX_IMAGE_PIXELS = None

_EXIF_ORIENTATION_TAG = 0x0112
_SIDEWAYS_ORIENTATIONS = {5, 6, 7, 8}
_TRANSPOSE_FOR_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_REDUCIBLE_MODES = {"L", "LA", "La", "PA", "RGB", "RGBA", "RGBa", "CMYK", "YCbCr", "I", "F"}


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


class PixelBudget:
    """Bounds the pixels being decoded at once across threads; a larger image waits for the whole budget."""

    def __init__(self, pixels: int):
        self.capacity = max(1, int(pixels))
        self._free = self.capacity
        self._condition = threading.Condition()

    @contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        wanted = min(max(1, pixels), self.capacity)
        with self._condition:
            self._condition.wait_for(lambda: self._free >= wanted)
            self._free -= wanted
        try:
            yield
        finally:
            with self._condition:
                self._free += wanted
                self._condition.notify_all()


def _open(data: bytes | str | os.PathLike, source: str, max_pixels: int) -> Image.Image:
    """Open lazily (header only) and refuse a declared size over the limit before anything else."""
    try:
        if isinstance(data, (bytes, bytearray, memoryview)):
            image = Image.open(io.BytesIO(bytes(data)), formats=FORMATS)
        else:
            image = Image.open(data, formats=FORMATS)
    except FileNotFoundError:
        raise ImageDecodeError(source, "file not found") from None
    except UnidentifiedImageError:
        raise ImageDecodeError(source, f"not a recognised image format ({', '.join(FORMATS)})") from None
    except (OSError, ValueError, SyntaxError, EOFError, struct.error) as exc:
        reason = redact_paths(str(exc)) or type(exc).__name__
        raise ImageDecodeError(source, f"cannot be read ({reason})") from None
    width, height = image.size
    if width <= 0 or height <= 0:
        image.close()
        raise ImageDecodeError(source, f"declares an empty size {width}x{height}")
    if width * height > max_pixels:
        image.close()
        raise ImageTooLargeError(source, f"{width}x{height} = {width * height} pixels exceeds the limit of "
                                         f"{max_pixels}")
    return image


def _orientation(image: Image.Image) -> int:
    """EXIF orientation from the header alone: PNG's getexif() would decode every pixel to find it."""
    try:
        if image.format == "PNG":
            raw = image.info.get("exif")
            if not raw:
                return 1
            exif = Image.Exif()
            exif.load(raw)
        else:
            exif = image.getexif()
        orientation = exif.get(_EXIF_ORIENTATION_TAG, 1)
    except Exception:  # malformed EXIF blocks are common in the wild; treat as upright
        return 1
    return orientation if orientation in _TRANSPOSE_FOR_ORIENTATION else 1


def _upright(size: tuple[int, int], orientation: int) -> ImageSize:
    width, height = size
    return ImageSize(height, width) if orientation in _SIDEWAYS_ORIENTATIONS else ImageSize(width, height)


def read_image_size(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageSize:
    """Upright size from the header only, without decoding pixels."""
    source = str(path)
    with _open(path, source, max_pixels) as image:
        return _upright(image.size, _orientation(image))


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        array = np.asarray(image, dtype=np.float32)
        low, high = float(array.min()), float(array.max())
        scaled = np.zeros_like(array) if high <= low else (array - low) * (255.0 / (high - low))
        return Image.fromarray(np.rint(scaled).astype(np.uint8), mode="L").convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _shrink(image: Image.Image, needed: tuple[int, int] | None) -> Image.Image:
    """Reduce by the largest whole factor that keeps at least `needed` (stored orientation) pixels per side."""
    if needed is None:
        return image
    factor = min(image.size[0] // max(1, needed[0]), image.size[1] // max(1, needed[1]))
    if factor < 2:
        return image
    if image.mode not in _REDUCIBLE_MODES:
        image = _to_rgb(image)
    return image.reduce(factor)


def decode_upright(
    data: bytes | str | os.PathLike,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    source: str | None = None,
    needed_size: Callable[[ImageSize], tuple[int, int] | None] | None = None,
    budget: PixelBudget | None = None,
) -> tuple[np.ndarray, ImageSize]:
    """Decode to an upright HxWx3 uint8 RGB array; also returns the full upright size.

    `needed_size(upright size)` may return the (upright width, height) the caller will use: JPEG then
    decodes at a reduced scale (DCT scaling) and other formats are reduced right after decoding, so the
    array is at least that large in each dimension but may be smaller than the file, whose size the
    returned ImageSize keeps. `budget` bounds the pixels decoded at once across threads.
    """
    source = source or (str(data) if isinstance(data, (str, os.PathLike)) else "image")
    image = _open(data, source, max_pixels)
    try:
        orientation = _orientation(image)
        size = _upright(image.size, orientation)
        wanted = needed_size(size) if needed_size is not None else None
        stored = None if wanted is None else (wanted if orientation not in _SIDEWAYS_ORIENTATIONS else wanted[::-1])
        if stored is not None and image.format in ("JPEG", "MPO"):
            image.draft("RGB", stored)
        with budget.hold(image.size[0] * image.size[1]) if budget is not None else _no_budget():
            image.load()
            image = _shrink(image, stored)
        if orientation != 1:
            image = image.transpose(_TRANSPOSE_FOR_ORIENTATION[orientation])
        return np.asarray(_to_rgb(image)), size
    except ImageDecodeError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError, struct.error) as exc:
        reason = redact_paths(str(exc)) or type(exc).__name__
        raise ImageDecodeError(source, f"corrupt or truncated image data ({reason})") from None
    finally:
        image.close()


@contextmanager
def _no_budget() -> Iterator[None]:
    yield


def decode_image(
    data: bytes | str | os.PathLike,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    source: str | None = None,
    needed_size: Callable[[ImageSize], tuple[int, int] | None] | None = None,
) -> np.ndarray:
    return decode_upright(data, max_pixels, source, needed_size)[0]


def resolve_inside(root: Path, file_name: str) -> Path:
    """Join `file_name` under `root`, refusing absolute paths and `..` escapes."""
    candidate = Path(file_name)
    if candidate.is_absolute() or ".." in candidate.parts:
        raise InvalidArgument(f"file name {file_name!r} must be a relative path inside the image root")
    return root / candidate
