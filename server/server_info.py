"""ServerService: what this server is and holds, for any valid token (the console's health page)."""

from __future__ import annotations

import time
from importlib import metadata
from typing import Callable

from artdet.v1 import artdet_pb2 as pb
from artdet.v1 import artdet_pb2_grpc as rpc
from artdet.server.errors import rpc_errors
from artdet.server.model_repository import ModelRepository
from artdet.server.training_service import STATES

USAGE_CACHE_SECONDS = 30.0  # walking a large data directory is not free; health pages poll


def artdet_version() -> str:
    try:
        return metadata.version("artdet")
    except metadata.PackageNotFoundError:
        return "unknown"


class ServerInfoServicer(rpc.ServerServiceServicer):
    def __init__(self, repository: ModelRepository, roles_of: Callable, job_counts: Callable[[], dict[str, int]]
                 | None = None, used_bytes: Callable[[], int] | None = None, free_bytes: Callable[[], int] | None
                 = None):
        self.repository = repository
        self.roles_of = roles_of
        self.job_counts = job_counts
        self.used_bytes = used_bytes
        self.free_bytes = free_bytes
        self._usage = (0.0, 0)

    def _data_bytes(self) -> int:
        measured_at, used = self._usage
        if self.used_bytes is not None and time.monotonic() - measured_at > USAGE_CACHE_SECONDS:
            used = self.used_bytes()
            self._usage = (time.monotonic(), used)
        return used

    @rpc_errors
    def GetServerInfo(self, request, context):
        info = pb.ServerInfo(version=artdet_version(), roles=sorted(self.roles_of(context.invocation_metadata()) or ()),
                             detect_only=self.job_counts is None)
        info.models_loaded.extend(pb.ModelRef(name=n, version=v) for n, v in self.repository.loaded_versions())
        for name in self.repository.names():
            version = self.repository.active_version(name)
            if version:
                info.models_active.append(pb.ModelRef(name=name, version=version))
        if self.job_counts is not None:
            info.jobs.extend(pb.JobCount(state=STATES[state], jobs=count) for state, count in self.job_counts().items())
            info.data_bytes = self._data_bytes()
        if self.free_bytes is not None:
            info.free_bytes = self.free_bytes()
        return info
