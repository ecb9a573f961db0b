"""Decoding images as people see them, and refusing the ones that cannot be used."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from artdet.detector.images import (ImageDecodeError, ImageTooLargeError, decode_image, decode_upright, read_image_size,
                                    resolve_inside)


def _encode(image: Image.Image, fmt="JPEG", **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def exif_rotated_jpeg(width=120, height=80, orientation=6) -> bytes:
    """A stored landscape image whose EXIF says: rotate 90° clockwise to view (upright portrait)."""
    stored = Image.new("RGB", (width, height), (0, 0, 255))
    stored.paste((255, 0, 0), (0, 0, 20, 20))  # red mark at the stored top-left
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _encode(stored, exif=exif.tobytes(), quality=95)


def test_exif_orientation_is_applied():
    data = exif_rotated_jpeg()
    pixels, size = decode_upright(data)
    assert pixels.shape == (120, 80, 3) and (size.width, size.height) == (80, 120)
    # orientation 6: the stored top-left corner ends up at the upright top-right
    assert pixels[5, 75, 0] > 200 and pixels[5, 5, 0] < 60


@pytest.mark.parametrize("mode", ["L", "CMYK", "RGBA", "P", "I;16", "LA"])
def test_modes_become_rgb(mode):
    if mode == "I;16":
        image = Image.fromarray(np.arange(64 * 48, dtype=np.uint16).reshape(48, 64) * 20)
        data = _encode(image, "PNG")
    else:
        image = Image.new(mode, (64, 48))
        data = _encode(image, "JPEG" if mode in ("L", "CMYK") else "PNG")
    pixels = decode_image(data)
    assert pixels.shape == (48, 64, 3) and pixels.dtype == np.uint8
    if mode == "I;16":
        assert pixels.max() == 255 and pixels.min() == 0  # stretched to 8 bits, not clipped


def test_corrupt_truncated_and_oversized_images_get_clear_errors(tmp_path):
    good = _encode(Image.new("RGB", (200, 200), (10, 20, 30)))
    with pytest.raises(ImageDecodeError, match="not a recognised image format"):
        decode_image(b"GIF89a? nonsense bytes", source="upload.jpg")
    with pytest.raises(ImageDecodeError, match="corrupt or truncated"):
        decode_image(good[: len(good) // 2], source="half.jpg")
    with pytest.raises(ImageTooLargeError, match="exceeds the limit of 10000"):
        decode_image(good, max_pixels=10_000, source="big.jpg")
    path = tmp_path / "big.png"
    Image.new("RGB", (300, 300)).save(path)
    with pytest.raises(ImageTooLargeError):
        read_image_size(path, max_pixels=50_000)
    with pytest.raises(ImageDecodeError, match="file not found"):
        decode_image(tmp_path / "absent.jpg")


def test_draft_decoding_keeps_at_least_the_requested_size():
    data = _encode(Image.new("RGB", (1600, 1200), (200, 100, 50)))
    pixels, size = decode_upright(data, needed_size=lambda s: (300, 225))
    assert (size.width, size.height) == (1600, 1200)
    assert 300 <= pixels.shape[1] < 1600 and 225 <= pixels.shape[0] < 1200


def test_paths_cannot_escape_the_image_root(tmp_path):
    assert resolve_inside(tmp_path, "a/b.jpg") == tmp_path / "a" / "b.jpg"
    for bad in ("../x.jpg", "a/../../x.jpg", "/etc/passwd"):
        with pytest.raises(ValueError, match="relative path inside"):
            resolve_inside(tmp_path, bad)
