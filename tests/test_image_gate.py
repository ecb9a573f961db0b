"""The image-decoding gate: declared size checked before any pixel or EXIF work, reduced decoding for
every format, a shared pixel budget, and only typed errors for any bytes (property-based)."""

from __future__ import annotations

import io
import subprocess
import sys
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile

from artdet.detector.images import (ImageDecodeError, ImageTooLargeError, PixelBudget, decode_upright, read_image_size)
from artdet.tools.bench.fuzz import png_claiming, png_of_zeros
from tests.conftest import ROOT


def _peak_rss_mb_of(code: str, cap_mb: int = 1500) -> tuple[subprocess.CompletedProcess, float]:
    """Run `code` in a fresh interpreter (address space capped so a regression cannot take the machine)
    and return its peak resident memory."""
    prelude = f"import resource; resource.setrlimit(resource.RLIMIT_AS, ({cap_mb << 20}, {cap_mb << 20}))\n"
    # VmHWM: this process image's peak (ru_maxrss would carry the parent's peak across fork and exec)
    epilogue = ("\nprint('maxrss_kb', [int(l.split()[1]) for l in open('/proc/self/status')"
                " if l.startswith('VmHWM:')][0])\n")
    result = subprocess.run([sys.executable, "-c", prelude + code + epilogue], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result, int(result.stdout.split("maxrss_kb")[-1]) / 1024


def _refuse_both_ways(path, max_pixels: int) -> str:
    return ("import numpy, PIL.Image\n"  # imported before measuring: the baseline, not the image
            "from detector.images import decode_upright, read_image_size, ImageTooLargeError\n"
            f"path = {str(path)!r}\n"
            f"for call in (lambda: decode_upright(open(path, 'rb').read(), {max_pixels}),"
            " lambda: read_image_size(path, " + str(max_pixels) + ")):\n"
            "    try:\n        call()\n    except ImageTooLargeError as exc:\n        print('refused', exc)\n")


class _Decoded(BaseException):
    """Raised by a spy on Pillow's load(); a BaseException so no `except Exception` can swallow it."""


@pytest.mark.parametrize("side", [40_000, 65_535, 100_000])
def test_png_header_bomb_is_refused_before_any_pixel_work(side, monkeypatch):
    def spy(self, *args, **kwargs):
        raise _Decoded(f"{self.format} pixels decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    data = png_claiming(side, side, 8, 0)
    with pytest.raises(ImageTooLargeError, match=f"{side}x{side}"):
        decode_upright(data, 40_000_000)
    with pytest.raises(ImageTooLargeError):
        decode_upright(data, 40_000_000, needed_size=lambda s: (320, 320))


def test_a_large_png_is_refused_from_its_header_without_decoding(tmp_path):
    """Pillow's PNG getexif() decodes the whole image: a 256 MP PNG (768 MB as RGB) must be refused
    from its header, so the process never holds its pixels."""
    path = tmp_path / "huge.png"
    path.write_bytes(png_of_zeros(16_000, 16_000))
    result, peak_mb = _peak_rss_mb_of(_refuse_both_ways(path, 64_000_000))
    assert [line.split()[0] for line in result.stdout.splitlines()][:2] == ["refused", "refused"]
    assert peak_mb < 200, f"refusing a 256 MP PNG took {peak_mb:.0f} MB"


def test_png_exif_orientation_is_read_from_the_header_without_decoding(tmp_path):
    stored = Image.new("RGB", (120, 80), (0, 0, 255))
    stored.paste((255, 0, 0), (0, 0, 20, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    stored.save(buffer, "PNG", exif=exif.tobytes())
    (tmp_path / "rotated.png").write_bytes(buffer.getvalue())
    size = read_image_size(tmp_path / "rotated.png")
    pixels, upright = decode_upright(buffer.getvalue())
    assert (size.width, size.height) == (80, 120) == (upright.width, upright.height)
    assert pixels.shape == (120, 80, 3) and pixels[5, 75, 0] > 200


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "BMP", "TIFF", "JPEG"])
def test_every_format_is_decoded_near_the_size_the_caller_needs(fmt):
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (1200, 1600, 3), dtype=np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    pixels, size = decode_upright(buffer.getvalue(), needed_size=lambda s: (200, 150))
    assert (size.width, size.height) == (1600, 1200)  # the file's size, for mapping boxes back
    height, width = pixels.shape[:2]
    assert 200 <= width < 400 and 150 <= height < 300, (width, height)
    full, _ = decode_upright(buffer.getvalue())
    assert full.shape == (1200, 1600, 3)  # nothing asked for, nothing reduced


def test_sideways_images_are_reduced_in_their_upright_orientation():
    stored = Image.new("RGB", (1600, 1200), (10, 20, 30))
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    stored.save(buffer, "PNG", exif=exif.tobytes())
    pixels, size = decode_upright(buffer.getvalue(), needed_size=lambda s: (150, 200))
    assert (size.width, size.height) == (1200, 1600)
    assert pixels.shape[1] >= 150 and pixels.shape[0] >= 200 and pixels.shape[0] > pixels.shape[1]


def test_pixel_budget_bounds_pixels_held_at_once():
    budget = PixelBudget(100)
    held, peak, lock = [0], [0], threading.Lock()

    def work(pixels: int):
        with budget.hold(pixels):
            with lock:
                held[0] += min(pixels, 100)
                peak[0] = max(peak[0], held[0])
            threading.Event().wait(0.01)
            with lock:
                held[0] -= min(pixels, 100)

    threads = [threading.Thread(target=work, args=(p,)) for p in (60, 60, 30, 30, 500, 10, 90)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    assert 0 < peak[0] <= 100  # an image larger than the budget waits for all of it, and does not deadlock


def test_formats_outside_the_raster_list_are_refused():
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"
    with pytest.raises(ImageDecodeError, match="not a recognised image format"):
        decode_upright(eps, source="upload.eps")


def _valid_images() -> list[bytes]:
    out = []
    for fmt in ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF"):
        buffer = io.BytesIO()
        Image.new("RGB", (24, 16), (200, 30, 30)).save(buffer, fmt)
        out.append(buffer.getvalue())
    return out


VALID = _valid_images()


@st.composite
def mutated_images(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(0, 8))):
        position = draw(st.integers(0, len(data) - 1))
        data[position] = draw(st.integers(0, 255))
    cut = draw(st.integers(1, len(data)))
    return bytes(data[:cut]) + draw(st.binary(max_size=16))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(mutated_images(), st.binary(max_size=256)))
def test_any_bytes_give_an_image_or_a_typed_error(data):
    try:
        pixels, size = decode_upright(data, max_pixels=4_000_000, needed_size=lambda s: (16, 16))
    except ImageDecodeError:
        return
    assert pixels.ndim == 3 and pixels.shape[2] == 3 and pixels.dtype == np.uint8
    assert size.width * size.height <= 4_000_000


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 70_000), st.integers(1, 70_000))
def test_declared_sizes_over_the_limit_are_refused_from_the_header(width, height):
    data = png_claiming(width, height, 8, 0)
    if width * height > 1_000_000:
        with pytest.raises(ImageTooLargeError):
            decode_upright(data, max_pixels=1_000_000)
    else:
        try:  # the data stops early: decoded (tiny images) or refused as truncated, never another error
            pixels, _ = decode_upright(data, max_pixels=1_000_000)
        except ImageDecodeError:
            return
        assert pixels.shape == (height, width, 3)
