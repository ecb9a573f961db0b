"""The one place that turns domain errors into gRPC status codes."""

from __future__ import annotations

import functools
import inspect
import logging

import grpc

from detector.dataset import DatasetValidationError
from detector.images import ImageDecodeError, ImageTooLargeError
from detector.inference import ModelLoadError

log = logging.getLogger("artdet.server")


class ServiceError(Exception):
    code = grpc.StatusCode.INTERNAL


class InvalidArgument(ServiceError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(ServiceError):
    code = grpc.StatusCode.NOT_FOUND


class FailedPrecondition(ServiceError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(ServiceError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class DeadlineExceeded(ServiceError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


def status_of(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    if isinstance(exc, ServiceError):
        return exc.code, str(exc)
    if isinstance(exc, ImageTooLargeError):
        return grpc.StatusCode.INVALID_ARGUMENT, f"image: {exc}"
    if isinstance(exc, (DatasetValidationError, ImageDecodeError)):
        return grpc.StatusCode.INVALID_ARGUMENT, str(exc)
    if isinstance(exc, ModelLoadError):
        return grpc.StatusCode.FAILED_PRECONDITION, str(exc)
    if isinstance(exc, ValueError):
        return grpc.StatusCode.INVALID_ARGUMENT, str(exc)
    return grpc.StatusCode.INTERNAL, f"internal error ({type(exc).__name__}); see the server log"


def _already_aborted(exc: BaseException) -> bool:
    # grpc's context.abort() raises a bare Exception() after recording the status
    return type(exc) is Exception and not exc.args


def _abort(context: grpc.ServicerContext, exc: BaseException):
    code, message = status_of(exc)
    if code == grpc.StatusCode.INTERNAL:
        log.exception("unexpected error", exc_info=exc)
    context.abort(code, message)


def rpc_errors(method):
    """Servicer decorator: domain errors become status codes; unary and streaming methods alike."""
    if inspect.isgeneratorfunction(method):
        @functools.wraps(method)
        def stream(self, request, context):
            try:
                yield from method(self, request, context)
            except Exception as exc:  # noqa: BLE001 - mapped to a status, never a traceback to clients
                if _already_aborted(exc):
                    raise
                _abort(context, exc)
        return stream

    @functools.wraps(method)
    def unary(self, request, context):
        try:
            return method(self, request, context)
        except Exception as exc:  # noqa: BLE001
            if _already_aborted(exc):
                raise
            _abort(context, exc)
    return unary
