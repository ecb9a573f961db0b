"""Start `artdet serve` for a benchmark and read its memory."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import grpc
import psutil
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]


def rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


def peak_rss_mb(pid: int) -> float:
    """The process's peak RSS (VmHWM): Linux keeps it only in /proc/PID/status, and psutil does not read it."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise KeyError("VmHWM")


class BenchServer:
    """A server subprocess; `ready_s` is the time from exec to a SERVING health answer."""

    def __init__(self, *args: str, port: int):
        self.address = f"127.0.0.1:{port}"
        env = {**os.environ}
        env.pop("ARTDET_TOKENS", None)
        started = time.perf_counter()
        self.process = subprocess.Popen([sys.executable, "-m", "artdet.tools.cli", "serve", "--port", str(port),
                                         "--no-console", *args],
                                        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with grpc.insecure_channel(self.address) as channel:
            connected = grpc.channel_ready_future(channel)
            while True:
                try:
                    connected.result(timeout=1)
                    break
                except grpc.FutureTimeoutError:
                    if self.process.poll() is not None:
                        raise RuntimeError(f"bench server exited with {self.process.returncode}") from None
            status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5).status
        if status != health_pb2.HealthCheckResponse.SERVING:
            raise RuntimeError(f"bench server is up but {health_pb2.HealthCheckResponse.ServingStatus.Name(status)}")
        self.ready_s = time.perf_counter() - started

    def rss_mb(self) -> float:
        return rss_mb(self.process.pid)

    def peak_rss_mb(self) -> float:
        return peak_rss_mb(self.process.pid)

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
