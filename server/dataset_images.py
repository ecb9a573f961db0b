"""A stored dataset version's images for people to browse: pages of images with their boxes, and JPEG
thumbnails made once through the image gate and cached beside the data (never inside the immutable
dataset folder)."""

from __future__ import annotations

import functools
import io
import os
import shutil
import tempfile
import threading
from pathlib import Path

from PIL import Image

from artdet.detector.dataset import DetectionDataset, ImageRecord, load_coco
from artdet.detector.errors import DataCorrupted, InvalidArgument, NotFound, show
from artdet.detector.images import ImageDecodeError, decode_upright
from artdet.server.store import DatasetRow

DEFAULT_PAGE_SIZE = 24
MAX_PAGE_SIZE = 200
DEFAULT_MAX_SIDE = 320
MAX_SIDE = 1024
MIN_SIDE = 32


class DatasetImages:
    def __init__(self, cache_root: Path, max_image_pixels: int, concurrent_decodes: int = 2):
        self.cache_root = cache_root
        self.max_image_pixels = max_image_pixels
        self._decoding = threading.BoundedSemaphore(concurrent_decodes)

    @staticmethod
    @functools.lru_cache(maxsize=8)
    def _dataset(folder: Path, sha256: str) -> DetectionDataset:
        """Parsed once per version (validated when it was uploaded: sizes are trusted, files not reopened)."""
        return load_coco(folder / "annotations.json", folder / "images", check_files=False)

    @staticmethod
    @functools.lru_cache(maxsize=8)
    def _by_id(folder: Path, sha256: str) -> dict[int, ImageRecord]:
        return {image.id: image for image in DatasetImages._dataset(folder, sha256).images}

    def dataset(self, row: DatasetRow) -> DetectionDataset:
        return self._dataset(row.path, row.sha256)

    def page(self, row: DatasetRow, page_size: int, page_token: str) -> tuple[DetectionDataset, list[ImageRecord],
                                                                             str]:
        """The images of one page and the token of the next ('' after the last)."""
        if page_size < 0 or page_size > MAX_PAGE_SIZE:
            raise InvalidArgument(f"page_size: {page_size} is outside 0..{MAX_PAGE_SIZE}")
        size = page_size or DEFAULT_PAGE_SIZE
        if page_token and not page_token.isdigit():
            raise InvalidArgument("page_token: not a token this server gave (use next_page_token)")
        start = int(page_token or 0)
        dataset = self.dataset(row)
        if start > len(dataset.images):
            raise InvalidArgument(f"page_token: past the last of {len(dataset.images)} images")
        images = dataset.images[start:start + size]
        following = start + size
        return dataset, images, str(following) if following < len(dataset.images) else ""

    def cache_dir(self, row: DatasetRow) -> Path:
        return self.cache_root / row.name / f"v{row.version}-{row.sha256[:16]}"

    def thumbnail(self, row: DatasetRow, image_id: int, max_side: int) -> tuple[bytes, int, int]:
        """JPEG bytes, width, height of the upright image scaled to fit max_side (never enlarged)."""
        if max_side and not MIN_SIDE <= max_side <= MAX_SIDE:
            raise InvalidArgument(f"max_side: {max_side} is outside {MIN_SIDE}..{MAX_SIDE} (0: {DEFAULT_MAX_SIDE})")
        side = max_side or DEFAULT_MAX_SIDE
        image = self._by_id(row.path, row.sha256).get(image_id)
        if image is None:
            raise NotFound(f"image_id: {image_id} is not an image of dataset {row.name} v{row.version}")
        cached = self.cache_dir(row) / str(side) / f"{image_id}.jpg"
        if cached.is_file():
            data = cached.read_bytes()
            with Image.open(io.BytesIO(data)) as thumb:
                return data, thumb.width, thumb.height
        with self._decoding:
            scale = min(1.0, side / max(image.width, image.height))
            try:
                pixels, _ = decode_upright(image.path, self.max_image_pixels, source=image.file_name,
                                           needed_size=lambda size: (max(1, round(size.width * scale)),
                                                                     max(1, round(size.height * scale))))
            except (OSError, ImageDecodeError) as exc:  # it was whole when uploaded: the copy here is damaged
                raise DataCorrupted(f"dataset {row.name} v{row.version}: image {show(image.file_name)} is missing "
                                    "or damaged on the server") from exc
            thumb = Image.fromarray(pixels)
            thumb.thumbnail((side, side), Image.Resampling.LANCZOS)
            buffer = io.BytesIO()
            thumb.save(buffer, "JPEG", quality=85)
        data = buffer.getvalue()
        _write_atomically(cached, data)
        return data, thumb.width, thumb.height

    def forget(self, name: str, version: int = 0) -> None:
        """Drop the cache of a deleted version (0: every version of the name)."""
        folder = self.cache_root / name
        if not folder.is_dir():
            return
        for cached in folder.iterdir():
            if not version or cached.name.startswith(f"v{version}-"):
                shutil.rmtree(cached, ignore_errors=True)


def _write_atomically(path: Path, data: bytes) -> None:
    """A cache entry appears whole or not at all; a full disk only costs the cache."""
    temporary = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".part")
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(temporary, path)
    except OSError:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
