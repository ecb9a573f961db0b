"""Prometheus metrics: requests, latency histograms and errors per method; job states."""

from __future__ import annotations

import time

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server


class ServerMetrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter("artdet_grpc_requests", "gRPC calls by method and status code",
                                ["method", "code"], registry=self.registry)
        self.latency = Histogram("artdet_grpc_latency_seconds", "gRPC call latency", ["method"],
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
                                 registry=self.registry)
        self.jobs = Gauge("artdet_jobs", "training jobs by state", ["state"], registry=self.registry)

    def serve(self, port: int, host: str) -> None:
        start_http_server(port, addr=host, registry=self.registry)

    def set_job_counts(self, counts: dict[str, int]) -> None:
        for state, count in counts.items():
            self.jobs.labels(state).set(count)


def _mark_failed(context) -> None:
    """An exception without a status set by the servicer reaches the client as UNKNOWN: count it so."""
    if context.code() is None:
        context.set_code(grpc.StatusCode.UNKNOWN)


class MetricsInterceptor(grpc.ServerInterceptor):
    def __init__(self, metrics: ServerMetrics):
        self.metrics = metrics

    def _record(self, method: str, started: float, context) -> None:
        code = context.code() if hasattr(context, "code") else None
        name = (code or grpc.StatusCode.OK).name if isinstance(code, grpc.StatusCode) else "OK"
        self.metrics.requests.labels(method, name).inc()
        self.metrics.latency.labels(method).observe(time.perf_counter() - started)

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        record = self._record

        def unary_response(behaviour):
            def call(request, context):
                started = time.perf_counter()
                try:
                    return behaviour(request, context)
                except Exception:
                    _mark_failed(context)
                    raise
                finally:
                    record(method, started, context)
            return call

        def stream_response(behaviour):
            def call(request, context):
                started = time.perf_counter()
                try:
                    yield from behaviour(request, context)
                except Exception:
                    _mark_failed(context)
                    raise
                finally:
                    record(method, started, context)
            return call

        if handler.unary_unary:
            return handler._replace(unary_unary=unary_response(handler.unary_unary))
        if handler.stream_unary:
            return handler._replace(stream_unary=unary_response(handler.stream_unary))
        if handler.unary_stream:
            return handler._replace(unary_stream=stream_response(handler.unary_stream))
        return handler._replace(stream_stream=stream_response(handler.stream_stream))
