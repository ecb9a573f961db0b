"""The console's HTTP(S) server: uvicorn in a thread of the gRPC server's process, on a socket bound up
front so a busy port fails `artdet serve` at once, with the address in the message."""

from __future__ import annotations

import logging
import socket
import threading
from pathlib import Path

import uvicorn

from artdet.detector.errors import FailedPrecondition
from artdet.server.console.app import console_app

log = logging.getLogger("artdet.console")


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise FailedPrecondition(f"--console-host/--console-port: cannot listen on {host}:{port} ({exc.strerror}); "
                                 "another artdet serve? (--no-console turns the console off)") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


class ConsoleServer:
    def __init__(self, host: str, port: int, grpc_target: str, scratch_root: Path, max_upload_bytes: int,
                 max_image_bytes: int, tls_cert: str | None = None, tls_key: str | None = None,
                 label_studio_url: str = ""):
        self.socket = _bind(host, port)
        self.host = host
        self.port = self.socket.getsockname()[1]
        self.scheme = "https" if tls_cert else "http"
        app = console_app(grpc_target, scratch_root, max_upload_bytes, max_image_bytes, label_studio_url)
        config = uvicorn.Config(app, log_level="warning", access_log=False, ssl_certfile=tls_cert,
                                ssl_keyfile=tls_key, timeout_graceful_shutdown=3, lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]},
                                       name="console", daemon=True)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}/"

    def start(self) -> None:
        self.thread.start()
        log.info("artdet console on %s", self.url)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.socket.close()
