"""DetectionService: images in, labelled boxes out, from the active (or a named) model version."""

from __future__ import annotations

import time

from artdet.v1 import artdet_pb2 as pb
from artdet.v1 import artdet_pb2_grpc as rpc
from detector.errors import DeadlineExceeded, InvalidArgument
from server.errors import rpc_errors
from server.model_repository import ModelRepository

DEFAULT_SCORE_THRESHOLD = 0.5
DEFAULT_MAX_DETECTIONS = 100


class DetectionServicer(rpc.DetectionServiceServicer):
    def __init__(self, repository: ModelRepository):
        self.repository = repository

    def _detect(self, request: pb.DetectRequest, context, source: str = "image") -> pb.DetectResponse:
        started = time.perf_counter()
        if not request.image:
            raise InvalidArgument("image: empty; send JPEG, PNG or WebP bytes")
        threshold = request.score_threshold if request.HasField("score_threshold") else DEFAULT_SCORE_THRESHOLD
        if not 0.0 <= threshold <= 1.0:
            raise InvalidArgument(f"score_threshold: {threshold} is not within [0, 1]")
        if request.max_detections < 0:
            raise InvalidArgument("max_detections: must be >= 0")
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:
            raise DeadlineExceeded("deadline expired before detection started")
        model = self.repository.resolve(request.model_name, request.model_version)
        try:
            result = model.detector.detect(request.image, threshold, request.max_detections or DEFAULT_MAX_DETECTIONS,
                                           list(request.classes) or None, source=source)
        except ValueError as exc:
            raise InvalidArgument(str(exc)) from None
        width, height = result.width, result.height
        response = pb.DetectResponse(width=width, height=height, model_name=model.name, model_version=model.version)
        for det in result.detections:
            x1, y1, x2, y2 = det.box
            response.detections.append(pb.Detection(
                box=pb.Box(x1=x1, y1=y1, x2=x2, y2=y2),
                box_normalized=pb.Box(x1=x1 / width, y1=y1 / height, x2=x2 / width, y2=y2 / height),
                score=det.score, label=det.label, label_id=det.label_id,
                description=model.descriptions.get(det.label, "")))
        response.server_time_ms = (time.perf_counter() - started) * 1000
        return response

    @rpc_errors
    def Detect(self, request, context):
        return self._detect(request, context)

    @rpc_errors
    def DetectStream(self, request_iterator, context):
        for index, request in enumerate(request_iterator):
            yield self._detect(request, context, source=f"frame {index}")
