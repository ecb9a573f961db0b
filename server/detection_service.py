"""DetectionService: images in, labelled boxes out, from the active (or a named) model version."""

from __future__ import annotations

import time
from typing import Callable

from artdet.v1 import artdet_pb2 as pb
from artdet.v1 import artdet_pb2_grpc as rpc
from artdet.detector.config import DETECTIONS_PER_IMAGE, SCORE_THRESHOLD
from artdet.detector.errors import ArtdetError, DeadlineExceeded, InvalidArgument
from artdet.server.errors import rpc_errors, status_of
from artdet.server.model_repository import ModelRepository
from artdet.server.suggestions import StoredImages, suggest

MAX_DETECTIONS_LIMIT = 1000
MAX_CLASS_FILTER = 256
MAX_CLASS_NAME_CHARS = 128


def _check_request(request: pb.DetectRequest) -> tuple[float, int]:
    if not request.image:
        raise InvalidArgument("image: empty; send JPEG, PNG or WebP bytes")
    threshold = request.score_threshold if request.HasField("score_threshold") else SCORE_THRESHOLD
    if not 0.0 <= threshold <= 1.0:  # NaN fails this too
        raise InvalidArgument(f"score_threshold: {threshold} is not within [0, 1]")
    if not 0 <= request.max_detections <= MAX_DETECTIONS_LIMIT:
        raise InvalidArgument(f"max_detections: {request.max_detections} is not within [0, {MAX_DETECTIONS_LIMIT}]")
    if request.model_version < 0:
        raise InvalidArgument(f"model_version: {request.model_version} must be >= 0")
    if len(request.classes) > MAX_CLASS_FILTER:
        raise InvalidArgument(f"classes: {len(request.classes)} names; at most {MAX_CLASS_FILTER}")
    if any(len(name) > MAX_CLASS_NAME_CHARS for name in request.classes):
        raise InvalidArgument(f"classes: a class name is longer than {MAX_CLASS_NAME_CHARS} characters")
    return threshold, request.max_detections or DETECTIONS_PER_IMAGE


class DetectionServicer(rpc.DetectionServiceServicer):
    def __init__(self, repository: ModelRepository, stored_images: StoredImages | None = None,
                 roles_of: Callable[[object], set[str] | None] = lambda metadata: {"admin"}):
        self.repository = repository
        self.stored_images = stored_images  # the full server's datasets, for SuggestImages
        self.roles_of = roles_of  # the caller's roles from its metadata (server/auth.py)

    def _detect(self, request: pb.DetectRequest, context, source: str = "image") -> pb.DetectResponse:
        started = time.perf_counter()
        threshold, max_detections = _check_request(request)
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:
            raise DeadlineExceeded("deadline expired before detection started")
        model = self.repository.resolve(request.model_name, request.model_version)
        result = model.detector_for(request.variant).detect(request.image, threshold, max_detections,
                                                            list(request.classes) or None, source=source)
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
        """A bad frame is answered with its error and the stream goes on; a server fault still ends it."""
        for index, request in enumerate(request_iterator):
            try:
                yield self._detect(request, context, source=f"frame {index}")
            except ArtdetError as exc:
                code, message = status_of(exc)
                yield pb.DetectResponse(error=pb.FrameError(code=code.name, message=message))

    @rpc_errors
    def SuggestImages(self, request_iterator, context):
        return suggest(self.repository, request_iterator, self.stored_images,
                       self.roles_of(context.invocation_metadata()) or set(), context)
