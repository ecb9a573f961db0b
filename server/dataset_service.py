"""DatasetService: streamed uploads (ingested by server/ingest.py), listing and deletion of dataset versions."""

from __future__ import annotations

from typing import Iterator

import grpc

from artdet.v1 import artdet_pb2 as pb
from artdet.v1 import artdet_pb2_grpc as rpc
from artdet.detector.errors import ArtdetError, Cancelled, InvalidArgument
from artdet.server.dataset_images import DatasetImages
from artdet.server.errors import rpc_errors
from artdet.server.ingest import ingest_dataset
from artdet.server.names import check_name
from artdet.server.store import DatasetRow, Store


def dataset_message(row: DatasetRow, reused: bool = False) -> pb.Dataset:
    stats = row.statistics
    return pb.Dataset(
        name=row.name, version=row.version, sha256=row.sha256, created_at=row.created_at, reused=reused,
        statistics=pb.DatasetStatistics(
            images=stats["images"], boxes=stats["boxes"], negative_images=stats["negative_images"],
            boxes_per_class=[pb.ClassCount(name=n, boxes=c) for n, c in stats["boxes_per_class"].items()],
            min_width=stats["min_width"], max_width=stats["max_width"], min_height=stats["min_height"],
            max_height=stats["max_height"], bytes=stats.get("bytes", 0)))


def _header(requests: Iterator[pb.UploadDatasetRequest]) -> pb.DatasetHeader:
    first = next(requests, None)
    if first is None or first.WhichOneof("part") != "header":
        raise InvalidArgument("header: the first message of an upload must be a DatasetHeader")
    return first.header


def _chunks(requests: Iterator[pb.UploadDatasetRequest]) -> Iterator[pb.ImageChunk]:
    for index, message in enumerate(requests, start=1):
        part = message.WhichOneof("part")
        if part != "chunk":
            raise InvalidArgument(f"message {index}: after the header every message must carry a chunk, "
                                  f"got {part or 'an empty message'}")
        yield message.chunk


class DatasetServicer(rpc.DatasetServiceServicer):
    def __init__(self, store: Store, max_upload_bytes: int, max_image_pixels: int):
        self.store = store
        self.max_upload_bytes = max_upload_bytes
        self.max_image_pixels = max_image_pixels
        self.images = DatasetImages(store.cache_dir("thumbnails"), max_image_pixels)

    @rpc_errors
    def UploadDataset(self, request_iterator, context):
        try:
            row, reused = ingest_dataset(self.store, _header(request_iterator), _chunks(request_iterator),
                                         max_bytes=self.max_upload_bytes, max_image_pixels=self.max_image_pixels,
                                         is_active=context.is_active)
        except (ArtdetError, grpc.RpcError):
            # the client went away: whatever that cut short (a half-read stream, a file ended early) is
            # a cancellation, not the client's mistake nor a crash
            if not context.is_active():
                raise Cancelled("upload cancelled by the client") from None
            raise
        return dataset_message(row, reused)

    @rpc_errors
    def ListDatasets(self, request, context):
        return pb.ListDatasetsResponse(datasets=[dataset_message(r) for r in self.store.list_datasets(request.name)])

    @rpc_errors
    def GetDataset(self, request, context):
        return dataset_message(self.store.get_dataset(check_name(request.name, "name"), request.version))

    @rpc_errors
    def DeleteDataset(self, request, context):
        name = check_name(request.name, "name")
        count = self.store.delete_dataset(name, request.version)
        self.images.forget(name, request.version)
        return pb.DeleteDatasetResponse(deleted_versions=count)

    @rpc_errors
    def ListDatasetImages(self, request, context):
        row = self.store.get_dataset(check_name(request.name, "name"), request.version)
        dataset, images, following = self.images.page(row, request.page_size, request.page_token)
        return pb.ListDatasetImagesResponse(
            images=[pb.DatasetImage(id=image.id, file_name=image.file_name, width=image.width, height=image.height,
                                    boxes=[pb.AnnotatedBox(label=dataset.class_names[box.label - 1],
                                                           box=pb.Box(x1=box.box[0], y1=box.box[1],
                                                                      x2=box.box[2], y2=box.box[3]))
                                           for box in dataset.boxes(image.id)])
                    for image in images],
            next_page_token=following, total=len(dataset.images))

    @rpc_errors
    def GetDatasetImage(self, request, context):
        row = self.store.get_dataset(check_name(request.name, "name"), request.version)
        jpeg, width, height = self.images.thumbnail(row, request.image_id, request.max_side)
        return pb.DatasetImageData(jpeg=jpeg, width=width, height=height)

