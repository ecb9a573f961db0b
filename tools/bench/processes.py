"""Start `artdet serve` for a benchmark and read its memory from /proc."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]


def proc_status_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


class BenchServer:
    """A server subprocess; `ready_s` is the time from exec to a SERVING health answer."""

    def __init__(self, *args: str, port: int):
        self.address = f"127.0.0.1:{port}"
        env = {**os.environ}
        env.pop("ARTDET_TOKENS", None)
        started = time.perf_counter()
        self.process = subprocess.Popen([sys.executable, "-m", "tools.cli", "serve", "--port", str(port), *args],
                                        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        stub = health_pb2_grpc.HealthStub(grpc.insecure_channel(self.address))
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"bench server exited with {self.process.returncode}")
            try:
                if stub.Check(health_pb2.HealthCheckRequest(), timeout=0.5).status == \
                        health_pb2.HealthCheckResponse.SERVING:
                    break
            except grpc.RpcError:
                time.sleep(0.01)
        self.ready_s = time.perf_counter() - started

    def rss_mb(self) -> float:
        return proc_status_mb(self.process.pid, "VmRSS")

    def peak_rss_mb(self) -> float:
        return proc_status_mb(self.process.pid, "VmHWM")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
