"""What every artdet RPC gets before the servicer sees it: malformed messages become INVALID_ARGUMENT
(grpcio would answer INTERNAL), and long-lived streams are bounded so they never take every thread
Detect needs."""

from __future__ import annotations

import threading
from typing import Any, Callable, Iterator

import grpc

_MAKE_HANDLER = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


def _behavior(handler: grpc.RpcMethodHandler) -> Callable:
    return {
        (False, False): handler.unary_unary,
        (False, True): handler.unary_stream,
        (True, False): handler.stream_unary,
        (True, True): handler.stream_stream,
    }[(handler.request_streaming, handler.response_streaming)]


def rebuild_handler(handler: grpc.RpcMethodHandler, behavior: Callable,
                    request_deserializer: Callable | None = None) -> grpc.RpcMethodHandler:
    """The same kind of handler with another behavior (and deserializer)."""
    make = _MAKE_HANDLER[(handler.request_streaming, handler.response_streaming)]
    return make(behavior, request_deserializer=request_deserializer or handler.request_deserializer,
                response_serializer=handler.response_serializer)


class _Malformed:
    """Stands in for a request message that could not be parsed."""

    def __init__(self, reason: str):
        self.reason = reason


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception as exc:  # noqa: BLE001 - any parse failure is the client's malformed message
            return _Malformed(type(exc).__name__)
    return parse


def _refuse_malformed(message: Any, context: grpc.ServicerContext, method: str, index: int | None = None) -> None:
    if isinstance(message, _Malformed):
        where = "request" if index is None else f"request message {index}"
        context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                      f"{where}: not a valid protobuf message for {method} ({message.reason})")


class RequestGuard(grpc.ServerInterceptor):
    """For the artdet services: parse failures → INVALID_ARGUMENT; at most `max_streams` streams at once."""

    def __init__(self, max_streams: int, prefix: str = "/artdet."):
        self.max_streams = max_streams
        self.prefix = prefix
        self._streams = threading.BoundedSemaphore(max_streams)

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or not method.startswith(self.prefix):
            return handler
        streaming = handler.request_streaming or handler.response_streaming
        inner = _behavior(handler)

        def behavior(request_or_iterator, context):
            if handler.request_streaming:
                request_or_iterator = self._checked_stream(request_or_iterator, context, method)
            else:
                _refuse_malformed(request_or_iterator, context, method)
            if handler.response_streaming:
                return self._in_slot(lambda: inner(request_or_iterator, context), context)
            if not streaming:
                return inner(request_or_iterator, context)
            self._take_slot(context)
            try:
                return inner(request_or_iterator, context)
            finally:
                self._streams.release()

        return rebuild_handler(handler, behavior, _tolerant(handler.request_deserializer))

    @staticmethod
    def _checked_stream(requests: Iterator[Any], context: grpc.ServicerContext, method: str) -> Iterator[Any]:
        for index, message in enumerate(requests):
            _refuse_malformed(message, context, method, index)
            yield message

    def _take_slot(self, context: grpc.ServicerContext) -> None:
        if not self._streams.acquire(blocking=False):
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                          f"too many open streams on this server (limit {self.max_streams}); try again later")

    def _in_slot(self, responses: Callable[[], Iterator[Any]], context: grpc.ServicerContext) -> Iterator[Any]:
        """Holds a slot from the first response on; a generator never started holds none."""
        self._take_slot(context)
        try:
            yield from responses()
        finally:
            self._streams.release()
