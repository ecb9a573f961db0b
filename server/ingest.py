"""Ingest of an uploaded dataset: what needs no image is checked before any image byte is read, image files
are staged as they stream in (each against its sha256), the engine validates the whole, and the store
publishes it as an immutable version, or returns the version that has the same content."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable

from artdet.v1 import artdet_pb2 as pb
from artdet.detector.dataset import NameTree, check_coco_structure, check_file_name, load_coco, parse_json
from artdet.detector.errors import Cancelled, InvalidArgument, ResourceExhausted, show
from artdet.detector.files import is_disk_full
from artdet.detector.voc import voc_files_to_coco
from artdet.server.names import check_name
from artdet.server.store import DatasetRow, Store


class _ImageWriter:
    """Writes chunked image files to disk as they arrive, checking each file's sha256.

    Every name is checked before it touches the disk: relative, of sane length, and able to coexist with
    the names before it (no file that is also a folder), so the file system never refuses one.
    """

    def __init__(self, root: Path, max_bytes: int):
        self.root = root
        self.max_bytes = max_bytes
        self.total = 0
        self.digests: dict[str, str] = {}
        self.names = NameTree()
        self._name: str | None = None
        self._handle = None
        self._hash = None

    def write(self, chunk: pb.ImageChunk) -> None:
        name = check_file_name(chunk.file_name, "chunk.file_name")
        if name != self._name:
            if self._name is not None:
                raise InvalidArgument(f"chunk.file_name: {show(self._name)} ended without its sha256 "
                                      f"before {show(name)} began")
            if name in self.digests:
                raise InvalidArgument(f"chunk.file_name: {show(name)} was sent twice")
            if PurePosixPath(name).suffix == "":
                raise InvalidArgument(f"chunk.file_name: {show(name)} is not an image file name")
            clash = self.names.add(name)
            if clash is not None:
                raise InvalidArgument(f"chunk.file_name: {clash}")
            path = self.root / name
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                handle = path.open("wb")
            except (FileExistsError, IsADirectoryError, NotADirectoryError) as exc:  # a clash the checks missed
                raise InvalidArgument(f"chunk.file_name: {show(name)} cannot be stored ({exc.strerror})") from None
            self._name, self._handle, self._hash = name, handle, hashlib.sha256()
        self.total += len(chunk.data)
        if self.total > self.max_bytes:
            raise ResourceExhausted(f"upload exceeds the server's limit of {self.max_bytes} bytes")
        self._handle.write(chunk.data)
        self._hash.update(chunk.data)
        if chunk.sha256:
            digest = self._hash.hexdigest()
            self._handle.close()
            if chunk.sha256.lower() != digest:
                raise InvalidArgument(f"chunk.sha256: {show(name)} arrived with sha256 {digest}, "
                                      f"the client sent {show(chunk.sha256)}")
            self.digests[name] = digest
            self._name = self._handle = self._hash = None

    def finish(self) -> None:
        if self._name is not None:
            raise InvalidArgument(f"chunk.sha256: the upload ended in the middle of {show(self._name)}")

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()


def _annotations(header: pb.DatasetHeader) -> tuple[object, bytes, str]:
    """The annotations as parsed COCO (not yet validated), the bytes stored with the dataset, and the header
    field they came from, for messages."""
    if header.format == pb.DATASET_FORMAT_COCO:
        if len(header.annotation_files) != 1:
            raise InvalidArgument("header.annotation_files: a COCO upload carries exactly one JSON file")
        source = header.annotation_files[0]
        field = f"header.annotation_files[0] ({show(source.file_name)})"
        return parse_json(source.content, field), source.content, field
    files = [(item.file_name, item.content) for item in header.annotation_files]
    coco = voc_files_to_coco(files, "header.annotation_files")
    return coco, json.dumps(coco, sort_keys=True).encode(), "header.annotation_files"


def _content_sha256(annotations: bytes, image_digests: dict[str, str]) -> str:
    """The dataset's identity: its annotations and each image's name and sha256, in name order."""
    content = hashlib.sha256(annotations)
    for file_name in sorted(image_digests):
        content.update(f"\n{file_name}\t{image_digests[file_name]}".encode())
    return content.hexdigest()


def ingest_dataset(store: Store, header: pb.DatasetHeader, chunks: Iterable[pb.ImageChunk], *, max_bytes: int,
                   max_image_pixels: int, is_active: Callable[[], bool] = lambda: True) -> tuple[DatasetRow, bool]:
    """The stored dataset and whether it was already there (same name, same content). Nothing stays under
    the store's tmp/ whatever fails; nothing is published once `is_active()` says the uploader has gone."""
    name = check_name(header.name, "header.name")
    if header.format not in (pb.DATASET_FORMAT_COCO, pb.DATASET_FORMAT_VOC):
        raise InvalidArgument("header.format: COCO or VOC is required")
    if not header.annotation_files:
        raise InvalidArgument("header.annotation_files: at least one annotation file is required")
    coco, annotations, source = _annotations(header)
    check_coco_structure(coco, source)
    staged = store.staging_dir("upload-")
    writer = _ImageWriter(staged / "images", max_bytes)
    try:
        for chunk in chunks:
            writer.write(chunk)
        writer.finish()
        if not is_active():
            raise Cancelled("upload cancelled by the client")
        dataset = load_coco(coco, staged / "images", max_pixels=max_image_pixels)
        (staged / "annotations.json").write_bytes(annotations)
        statistics = {**dataset.statistics(), "bytes": writer.total}
        return store.add_dataset(name, _content_sha256(annotations, writer.digests), statistics, staged)
    except OSError as exc:
        if is_disk_full(exc):  # the disk filled while image chunks were written
            raise store.disk_full() from None
        raise
    finally:
        writer.close()
        shutil.rmtree(staged, ignore_errors=True)  # already renamed away when the upload succeeded
