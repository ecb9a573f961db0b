"""Assemble and run the gRPC server: the full service (datasets, training, models, detection) or a
stateless Detect-only replica serving a model directory. No torch in this process: training runs in
worker processes."""

from __future__ import annotations

import functools
import ipaddress
import logging
import os
import shutil
import signal
import socket
import tempfile
import threading
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from artdet.v1 import artdet_pb2 as pb
from artdet.v1 import artdet_pb2_grpc as rpc
from artdet.detector.errors import FailedPrecondition
from artdet.server.auth import TOKENS_ENV, AuthInterceptor, load_tokens
from artdet.server.detection_service import DetectionServicer
from artdet.server.guard import RequestGuard
from artdet.server.memory import return_large_buffers_to_the_os
from artdet.server.metrics import MetricsInterceptor, ServerMetrics
from artdet.server.model_repository import ModelRepository
from artdet.server.server_info import ServerInfoServicer

log = logging.getLogger("artdet.server")


@dataclass
class ServerConfig:
    data_dir: str = "artdet-data"
    host: str = "127.0.0.1"  # loopback unless told otherwise
    port: int = 50051
    model_dir: str | None = None  # Detect-only replica serving this models directory
    tokens_file: str | None = None
    insecure: bool = False  # allow no tokens on an address beyond loopback
    tls_cert: str | None = None
    tls_key: str | None = None
    max_message_mb: int = 32
    max_image_pixels: int = 40_000_000
    max_upload_mb: int = 20_000
    job_concurrency: int = 1
    rpc_threads: int = 16
    max_streams: int = 0  # streams (uploads, watches, DetectStream, downloads) open at once; 0: rpc_threads // 2
    detect_concurrency: int = 2  # model runs at once; more than cores costs memory, not speed
    decode_budget_mp: int = 16  # megapixels decoded at once across Detect calls (bounds decoding memory)
    extra_loaded_versions: int = 2  # versions kept loaded beside each name's active and previous one
    shutdown_grace_s: float = 5.0
    ort_intra_threads: int | None = None
    ort_inter_threads: int | None = None
    default_model: str = ""
    metrics_port: int = 0  # 0: no Prometheus endpoint
    refresh_seconds: float = 2.0  # Detect-only replicas re-read active.json this often
    min_free_mb: int = 500  # below this much free space under data_dir, uploads and new jobs are refused
    console: bool = True  # the web console (full server only; needs the console extra)
    console_host: str = "127.0.0.1"
    console_port: int = 8051
    label_studio_url: str = ""  # the only Label Studio the console's ML backend works with; empty: any that sets up


def is_loopback(host: str) -> bool:
    """True when every address `host` names is this machine's loopback (127.0.0.1, ::1, localhost)."""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host.strip("[]"), None)}
    except socket.gaierror:
        return False
    return all(ipaddress.ip_address(address.split("%")[0]).is_loopback for address in addresses)


def server_tokens(config: ServerConfig) -> dict[str, set[str]]:
    """The bearer tokens. None at all is refused on an address other machines can reach, unless `insecure`
    says so; on loopback the auth interceptor only warns."""
    tokens = load_tokens(config.tokens_file)
    exposed = [f"--host {config.host}"] if not is_loopback(config.host) else []
    if config.console and not config.model_dir and not is_loopback(config.console_host):
        exposed.append(f"--console-host {config.console_host}")
    if not tokens and not config.insecure and exposed:
        verb = "is" if len(exposed) == 1 else "are"
        raise ValueError(f"{' and '.join(exposed)} {verb} reachable from other machines and no tokens are "
                         f"configured: give --tokens-file FILE or set {TOKENS_ENV}, or pass --insecure to serve without "
                         "authentication")
    return tokens


class _DetectOnlyReplica(grpc.ServerInterceptor):
    """Answers the services a replica does not serve with what it is, not grpcio's 'Method not found!'."""

    def intercept_service(self, continuation, handler_call_details):
        method = handler_call_details.method
        if not method.startswith("/artdet.v1.") or method.startswith(("/artdet.v1.DetectionService/",
                                                                       "/artdet.v1.ServerService/")):
            return continuation(handler_call_details)

        def refuse(_request, context):
            context.abort(grpc.StatusCode.UNIMPLEMENTED,
                          f"{method.lstrip('/')}: this server is a Detect-only replica (--model-dir); datasets, "
                          "training and the model registry are on the full server (artdet serve --data-dir)")
        return grpc.unary_unary_rpc_method_handler(refuse)


class ArtdetServer:
    """Detect from a model repository, health and reflection on one gRPC server, and the work that runs
    beside it. Built by `full` (datasets, training and the model registry of a data directory) or by
    `replica` (Detect alone, from a models directory it re-reads)."""

    def __init__(self, config: ServerConfig, tokens: dict[str, set[str]], models_root: Path, description: str,
                 refusal: grpc.ServerInterceptor | None = None):
        self.config = config
        self.description = description
        self.metrics = ServerMetrics()
        self.auth = AuthInterceptor(tokens)
        options = [("grpc.max_receive_message_length", config.max_message_mb << 20),
                   ("grpc.max_send_message_length", config.max_message_mb << 20),
                   ("grpc.so_reuseport", 0)]  # gRPC's default would let a second server share the port
        max_streams = config.max_streams or max(1, config.rpc_threads // 2)
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=config.rpc_threads),
                                  interceptors=[MetricsInterceptor(self.metrics), *([refusal] if refusal else []),
                                                self.auth, RequestGuard(max_streams)],
                                  options=options, maximum_concurrent_rpcs=config.rpc_threads * 8)
        self.repository = ModelRepository(models_root, config.ort_intra_threads, config.ort_inter_threads,
                                          config.max_image_pixels, config.default_model,
                                          extra_versions=config.extra_loaded_versions,
                                          decode_budget_pixels=config.decode_budget_mp * 1_000_000,
                                          concurrent_runs=config.detect_concurrency)
        self.health = health.HealthServicer()
        self.services: list[str] = []
        self._on_start: list[Callable[[], None]] = []
        self._on_stopping: list[Callable[[], None]] = []  # as the server stops accepting calls
        self._on_stopped: list[Callable[[], None]] = []  # once its calls have ended or were cancelled
        self.port = 0
        self.console = None
        self.detection = DetectionServicer(self.repository, roles_of=self.auth.roles_of)
        self._add_service("DetectionService", rpc.add_DetectionServiceServicer_to_server, self.detection)

    @classmethod
    def full(cls, config: ServerConfig) -> ArtdetServer:
        """Every service, over the data directory; training jobs run in worker processes."""
        from artdet.server.dataset_service import DatasetServicer
        from artdet.server.jobs import JobRunner
        from artdet.server.model_registry import register_model
        from artdet.server.model_service import ModelServicer
        from artdet.server.store import Store
        from artdet.server.suggestions import stored_images_of
        from artdet.server.training_service import TrainingServicer

        tokens = server_tokens(config)
        store = Store(config.data_dir, config.min_free_mb)
        server = cls(config, tokens, Path(config.data_dir) / "models", f"data in {Path(config.data_dir).resolve()}")
        runner = JobRunner(store, config.job_concurrency, register=functools.partial(register_model, store))
        runner.on_state_change = lambda: server.metrics.set_job_counts(runner.counts())
        server._on_start += [runner.start, runner.on_state_change]
        server._on_stopped.append(runner.stop)
        datasets = DatasetServicer(store, config.max_upload_mb << 20, config.max_image_pixels)
        server._add_service("DatasetService", rpc.add_DatasetServiceServicer_to_server, datasets)
        server.detection.stored_images = stored_images_of(store, datasets.images)
        server._add_service("TrainingService", rpc.add_TrainingServiceServicer_to_server,
                            TrainingServicer(store, runner, server.repository))
        server._add_service("ModelService", rpc.add_ModelServiceServicer_to_server,
                            ModelServicer(store, server.repository, server.auth.roles_of))
        server._add_service("ServerService", rpc.add_ServerServiceServicer_to_server, ServerInfoServicer(
            server.repository, server.auth.roles_of, runner.counts, store.used_bytes,
            lambda: shutil.disk_usage(store.root).free))
        server._listen()
        if config.console:
            server._add_console(store.root / "tmp")
        return server

    @classmethod
    def replica(cls, config: ServerConfig) -> ArtdetServer:
        """Detect alone, from `config.model_dir`, picking up activations from its active.json files."""
        tokens = server_tokens(config)
        models_root = Path(config.model_dir)
        if not models_root.is_dir():
            raise FileNotFoundError(f"--model-dir: {models_root} is not a directory")
        server = cls(config, tokens, models_root, f"Detect-only replica of {config.model_dir}",
                     refusal=_DetectOnlyReplica())
        server._add_service("ServerService", rpc.add_ServerServiceServicer_to_server,
                            ServerInfoServicer(server.repository, server.auth.roles_of))
        stop_refresh = threading.Event()

        def refresh_loop() -> None:
            while not stop_refresh.wait(config.refresh_seconds):
                server.repository.refresh()

        server._on_start.append(threading.Thread(target=refresh_loop, name="model-refresh", daemon=True).start)
        server._on_stopping.append(stop_refresh.set)
        return server._listen()

    def _add_service(self, name: str, add_to_server: Callable[[Any, grpc.Server], None], servicer: Any) -> None:
        add_to_server(servicer, self.server)
        self.services.append(pb.DESCRIPTOR.services_by_name[name].full_name)

    def _listen(self) -> ArtdetServer:
        """Health and reflection for every service added, and the port bound."""
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        for name in ("", *self.services):
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        reflection.enable_server_reflection((*self.services, health.SERVICE_NAME, reflection.SERVICE_NAME),
                                            self.server)
        self.port = self._bind()
        return self

    def _add_console(self, scratch_root: Path) -> None:
        """The web console, calling this server's RPCs over a Unix socket only this user can open."""
        try:
            from artdet.server.console.http_server import ConsoleServer
        except ImportError as exc:
            log.warning("web console off: %s is not installed (pip install 'artdet[console]'; --no-console "
                        "silences this)", exc.name)
            return
        socket_dir = Path(tempfile.mkdtemp(prefix="artdet-"))  # mode 0700; short enough for a socket path
        target = f"unix:{socket_dir / 'grpc.sock'}"
        if not self.server.add_insecure_port(target):
            raise FailedPrecondition("web console: cannot open its private socket (--no-console turns it off)")
        self.console = ConsoleServer(self.config.console_host, self.config.console_port, target, scratch_root,
                                     self.config.max_upload_mb << 20, self.config.max_message_mb << 20,
                                     self.config.tls_cert, self.config.tls_key, self.config.label_studio_url)
        self._on_start.append(self.console.start)
        self._on_stopped += [self.console.stop, lambda: shutil.rmtree(socket_dir, ignore_errors=True)]

    def _bind(self) -> int:
        address = f"{self.config.host}:{self.config.port}"
        if self.config.tls_cert or self.config.tls_key:
            if not (self.config.tls_cert and self.config.tls_key):
                raise ValueError("--tls-cert and --tls-key go together")
            credentials = grpc.ssl_server_credentials(
                [(Path(self.config.tls_key).read_bytes(), Path(self.config.tls_cert).read_bytes())])
        else:
            credentials = None
        try:
            if credentials is None:
                port = self.server.add_insecure_port(address)
            else:
                port = self.server.add_secure_port(address, credentials)
        except RuntimeError:  # grpcio raises where older versions returned 0
            port = 0
        if port == 0:
            raise FailedPrecondition(f"--host/--port: cannot listen on {address}: the port is in use (another "
                                     "artdet serve?) or the address is not this machine's")
        return port

    def start(self) -> None:
        for start in self._on_start:
            start()
        if self.config.metrics_port:
            self.metrics.serve(self.config.metrics_port, self.config.host)
        self.server.start()
        log.info("artdet serving on %s:%d (%s)", self.config.host, self.port, self.description)

    def stop(self, grace: float | None = None) -> bool:
        """Stop accepting calls, cancel what is still open after `grace`; True if everything ended in time."""
        grace = self.config.shutdown_grace_s if grace is None else grace
        for stop in self._on_stopping:
            stop()
        self.health.enter_graceful_shutdown()
        ended = self.server.stop(grace).wait(grace + 5.0)
        for stop in self._on_stopped:
            stop()
        return ended


def serve(config: ServerConfig) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return_large_buffers_to_the_os()
    server = ArtdetServer.replica(config) if config.model_dir else ArtdetServer.full(config)
    server.start()
    stopped = threading.Event()

    def on_signal(*_):
        if stopped.is_set():  # a second signal: the operator wants it gone now
            os._exit(1)
        stopped.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    if server.console is not None:
        print(f"artdet: web console on {server.console.url}", flush=True)
    print(f"artdet: ready on {config.host}:{server.port}", flush=True)
    stopped.wait()
    if not server.stop():
        log.warning("calls still open after the %.0f s grace period were abandoned", config.shutdown_grace_s)
    logging.shutdown()
    # A gRPC handler thread stuck in a client's half-sent stream must not keep the process alive.
    os._exit(0)
