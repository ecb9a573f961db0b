"""DatasetService: streamed uploads validated by the engine, stored as immutable versions."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path, PurePosixPath

import grpc

from artdet.v1 import artdet_pb2 as pb
from artdet.v1 import artdet_pb2_grpc as rpc
from detector.dataset import NameTree, check_coco_structure, check_file_name, load_coco, parse_json
from detector.errors import ArtdetError, Cancelled, InvalidArgument, ResourceExhausted, show
from detector.files import is_disk_full
from detector.voc import voc_files_to_coco
from server.errors import rpc_errors
from server.names import check_name
from server.store import DatasetRow, Store

COPY_BUFFER = 1 << 20


def dataset_message(row: DatasetRow, reused: bool = False) -> pb.Dataset:
    stats = row.statistics
    return pb.Dataset(
        name=row.name, version=row.version, sha256=row.sha256, created_at=row.created_at, reused=reused,
        statistics=pb.DatasetStatistics(
            images=stats["images"], boxes=stats["boxes"], negative_images=stats["negative_images"],
            boxes_per_class=[pb.ClassCount(name=n, boxes=c) for n, c in stats["boxes_per_class"].items()],
            min_width=stats["min_width"], max_width=stats["max_width"], min_height=stats["min_height"],
            max_height=stats["max_height"], bytes=stats.get("bytes", 0)))


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


class DatasetServicer(rpc.DatasetServiceServicer):
    def __init__(self, store: Store, max_upload_bytes: int, max_image_pixels: int):
        self.store = store
        self.max_upload_bytes = max_upload_bytes
        self.max_image_pixels = max_image_pixels

    @rpc_errors
    def UploadDataset(self, request_iterator, context):
        try:
            return self._upload(request_iterator, context)
        except (ArtdetError, grpc.RpcError):
            # the client went away: whatever that cut short (a half-read stream, a file ended early) is
            # a cancellation, not the client's mistake nor a crash
            if not context.is_active():
                raise Cancelled("upload cancelled by the client") from None
            raise
        except OSError as exc:
            if is_disk_full(exc):  # the disk filled while image chunks were written
                raise self.store.disk_full() from None
            raise

    def _upload(self, request_iterator, context) -> pb.Dataset:
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("part") != "header":
            raise InvalidArgument("header: the first message of an upload must be a DatasetHeader")
        header = first.header
        name = check_name(header.name, "header.name")
        if header.format not in (pb.DATASET_FORMAT_COCO, pb.DATASET_FORMAT_VOC):
            raise InvalidArgument("header.format: COCO or VOC is required")
        if not header.annotation_files:
            raise InvalidArgument("header.annotation_files: at least one annotation file is required")
        # what needs no image file is checked before any image byte is read
        coco, annotations, source = self._annotations(header)
        check_coco_structure(coco, source)
        staged = self.store.staging_dir("upload-")
        writer = _ImageWriter(staged / "images", self.max_upload_bytes)
        try:
            for index, message in enumerate(request_iterator, start=1):
                part = message.WhichOneof("part")
                if part != "chunk":
                    raise InvalidArgument(f"message {index}: after the header every message must carry a chunk, "
                                          f"got {part or 'an empty message'}")
                writer.write(message.chunk)
            writer.finish()
            if not context.is_active():
                raise Cancelled("upload cancelled by the client")
            dataset = load_coco(coco, staged / "images", max_pixels=self.max_image_pixels)
            (staged / "annotations.json").write_bytes(annotations)
            content = hashlib.sha256(annotations)
            for file_name in sorted(writer.digests):
                content.update(f"\n{file_name}\t{writer.digests[file_name]}".encode())
            statistics = {**dataset.statistics(), "bytes": writer.total}
            row, reused = self.store.add_dataset(name, content.hexdigest(), statistics, staged)
            return dataset_message(row, reused)
        finally:
            writer.close()
            shutil.rmtree(staged, ignore_errors=True)  # already renamed away when the upload succeeded

    @staticmethod
    def _annotations(header: pb.DatasetHeader) -> tuple[object, bytes, str]:
        """The annotations as parsed COCO (not yet validated), the bytes stored with the dataset, and
        the header field they came from, for messages."""
        if header.format == pb.DATASET_FORMAT_COCO:
            if len(header.annotation_files) != 1:
                raise InvalidArgument("header.annotation_files: a COCO upload carries exactly one JSON file")
            source = header.annotation_files[0]
            field = f"header.annotation_files[0] ({show(source.file_name)})"
            return parse_json(source.content, field), source.content, field
        files = [(item.file_name, item.content) for item in header.annotation_files]
        coco = voc_files_to_coco(files, "header.annotation_files")
        return coco, json.dumps(coco, sort_keys=True).encode(), "header.annotation_files"

    @rpc_errors
    def ListDatasets(self, request, context):
        return pb.ListDatasetsResponse(datasets=[dataset_message(r) for r in self.store.list_datasets(request.name)])

    @rpc_errors
    def GetDataset(self, request, context):
        return dataset_message(self.store.get_dataset(check_name(request.name, "name"), request.version))

    @rpc_errors
    def DeleteDataset(self, request, context):
        count = self.store.delete_dataset(check_name(request.name, "name"), request.version)
        return pb.DeleteDatasetResponse(deleted_versions=count)

