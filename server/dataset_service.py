"""DatasetService: streamed uploads validated by the engine, stored as immutable versions."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from artdet.v1 import artdet_pb2 as pb
from artdet.v1 import artdet_pb2_grpc as rpc
from detector.dataset import load_coco
from detector.images import resolve_inside
from detector.voc import voc_to_coco
from detector.errors import Cancelled, InvalidArgument, ResourceExhausted
from server.errors import rpc_errors
from server.store import DatasetRow, Store, check_name

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
    """Writes chunked image files to disk as they arrive, checking each file's sha256."""

    def __init__(self, root: Path, max_bytes: int):
        self.root = root
        self.max_bytes = max_bytes
        self.total = 0
        self.digests: dict[str, str] = {}
        self._name: str | None = None
        self._handle = None
        self._hash = None

    def write(self, chunk: pb.ImageChunk) -> None:
        name = chunk.file_name.replace("\\", "/")
        if name != self._name:
            if self._name is not None:
                raise InvalidArgument(f"chunk.file_name: {self._name!r} ended without its sha256 "
                                      f"before {name!r} began")
            if name in self.digests:
                raise InvalidArgument(f"chunk.file_name: {name!r} was sent twice")
            try:
                path = resolve_inside(self.root, name)
            except ValueError as exc:
                raise InvalidArgument(f"chunk.file_name: {exc}") from None
            if not name or path.suffix == "":
                raise InvalidArgument(f"chunk.file_name: {name!r} is not an image file name")
            path.parent.mkdir(parents=True, exist_ok=True)
            self._name, self._handle, self._hash = name, path.open("wb"), hashlib.sha256()
        self.total += len(chunk.data)
        if self.total > self.max_bytes:
            raise ResourceExhausted(f"upload exceeds the server's limit of {self.max_bytes} bytes")
        self._handle.write(chunk.data)
        self._hash.update(chunk.data)
        if chunk.sha256:
            digest = self._hash.hexdigest()
            self._handle.close()
            if chunk.sha256.lower() != digest:
                raise InvalidArgument(f"chunk.sha256: {name!r} arrived with sha256 {digest}, "
                                      f"the client sent {chunk.sha256}")
            self.digests[name] = digest
            self._name = self._handle = self._hash = None

    def finish(self) -> None:
        if self._name is not None:
            raise InvalidArgument(f"chunk.sha256: the upload ended in the middle of {self._name!r}")

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
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("part") != "header":
            raise InvalidArgument("header: the first message of an upload must be a DatasetHeader")
        header = first.header
        name = check_name(header.name, "header.name")
        if header.format not in (pb.DATASET_FORMAT_COCO, pb.DATASET_FORMAT_VOC):
            raise InvalidArgument("header.format: COCO or VOC is required")
        if not header.annotation_files:
            raise InvalidArgument("header.annotation_files: at least one annotation file is required")
        staged = self.store.staging_dir("upload-")
        writer = _ImageWriter(staged / "images", self.max_upload_bytes)
        try:
            for message in request_iterator:
                if message.WhichOneof("part") != "chunk":
                    raise InvalidArgument("header: only the first message may be a header")
                writer.write(message.chunk)
            writer.finish()
            if not context.is_active():
                raise Cancelled("upload cancelled by the client")
            coco, annotations = self._annotations(header, staged)
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
    def _annotations(header: pb.DatasetHeader, staged: Path) -> tuple[dict, bytes]:
        if header.format == pb.DATASET_FORMAT_COCO:
            if len(header.annotation_files) != 1:
                raise InvalidArgument("header.annotation_files: a COCO upload carries exactly one JSON file")
            source = header.annotation_files[0]
            try:
                coco = json.loads(source.content.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise InvalidArgument(f"header.annotation_files[0] ({source.file_name!r}): not valid JSON "
                                      f"({exc})") from None
            return coco, source.content
        xml_dir = staged / "voc"
        for index, item in enumerate(header.annotation_files):
            try:
                path = resolve_inside(xml_dir, item.file_name)
            except ValueError as exc:
                raise InvalidArgument(f"header.annotation_files[{index}].file_name: {exc}") from None
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(item.content)
        coco, _ = voc_to_coco(xml_dir, staged / "images")
        shutil.rmtree(xml_dir)
        return coco, json.dumps(coco, sort_keys=True).encode()

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

