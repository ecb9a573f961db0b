"""The one place that turns errors into gRPC status codes.

The engine's error hierarchy (detector/errors.py) maps by kind; a full disk is RESOURCE_EXHAUSTED
wherever it surfaces; anything else is a bug: INTERNAL, logged with a request id the client sees.
No message leaves the server with one of its paths in it.
"""

from __future__ import annotations

import functools
import inspect
import logging
import uuid

import grpc

from artdet.detector.errors import (ArtdetError, Cancelled, DataCorrupted, DeadlineExceeded, DiskFull,
                                    FailedPrecondition, InvalidArgument, NotFound, PermissionDenied, ResourceExhausted,
                                    Unavailable, redact_paths)
from artdet.detector.files import is_disk_full

log = logging.getLogger("artdet.server")

CODES: tuple[tuple[type[ArtdetError], grpc.StatusCode], ...] = (
    (InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (Cancelled, grpc.StatusCode.CANCELLED),
    (DeadlineExceeded, grpc.StatusCode.DEADLINE_EXCEEDED),
    (Unavailable, grpc.StatusCode.UNAVAILABLE),
    (DataCorrupted, grpc.StatusCode.DATA_LOSS),
)
MAX_MESSAGE_CHARS = 2000  # status details travel in HTTP/2 trailers, which have a hard size limit


def status_of(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status a client gets for `exc`; INTERNAL only for bugs."""
    if is_disk_full(exc):
        message = str(exc) if isinstance(exc, DiskFull) else "data directory full on the server; try again later"
        return grpc.StatusCode.RESOURCE_EXHAUSTED, redact_paths(message)
    for kind, code in CODES:
        if isinstance(exc, kind):
            return code, redact_paths(str(exc))
    return grpc.StatusCode.INTERNAL, ""


def _abort(context: grpc.ServicerContext, exc: BaseException, method: str):
    if isinstance(exc, grpc.RpcError) and not context.is_active():  # the client cancelled or went away
        context.abort(grpc.StatusCode.CANCELLED, "cancelled by the client")
    code, message = status_of(exc)
    if code == grpc.StatusCode.INTERNAL:
        request_id = uuid.uuid4().hex[:12]
        log.error("request %s (%s) failed", request_id, method, exc_info=exc)
        message = f"internal error (request id {request_id}; the server log has the details)"
    context.abort(code, message if len(message) <= MAX_MESSAGE_CHARS else message[:MAX_MESSAGE_CHARS] + " ...")


def _already_aborted(exc: BaseException) -> bool:
    # grpc's context.abort() raises a bare Exception() after recording the status
    return type(exc) is Exception and not exc.args


def rpc_errors(method):
    """Servicer decorator: errors become status codes; unary and streaming methods alike."""
    if inspect.isgeneratorfunction(method):
        @functools.wraps(method)
        def stream(self, request, context):
            try:
                yield from method(self, request, context)
            except Exception as exc:  # noqa: BLE001 - mapped to a status, never a traceback to clients
                if _already_aborted(exc):
                    raise
                _abort(context, exc, method.__name__)
        return stream

    @functools.wraps(method)
    def unary(self, request, context):
        try:
            return method(self, request, context)
        except Exception as exc:  # noqa: BLE001
            if _already_aborted(exc):
                raise
            _abort(context, exc, method.__name__)
    return unary
