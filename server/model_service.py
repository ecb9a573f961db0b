"""ModelService: the registry of exported models, which version is served, downloads."""

from __future__ import annotations

import hashlib
import json
from typing import Callable

from artdet.v1 import artdet_pb2 as pb
from artdet.v1 import artdet_pb2_grpc as rpc
from artdet.detector.errors import InvalidArgument, PermissionDenied
from artdet.server.errors import rpc_errors
from artdet.server.model_repository import ModelRepository, variant_file
from artdet.server.names import check_name
from artdet.server.store import ModelRow, Store

DOWNLOAD_CHUNK = 1 << 20
MAX_DESCRIPTION_CHARS = 2000  # every Detect response carries it, once per box


class ModelServicer(rpc.ModelServiceServicer):
    def __init__(self, store: Store, repository: ModelRepository,
                 roles_of: Callable[[object], set[str] | None] = lambda metadata: {"admin"}):
        self.store = store
        self.repository = repository
        self.roles_of = roles_of  # the caller's roles from its metadata (server/auth.py)

    def _manages_models(self, context) -> bool:
        return bool((self.roles_of(context.invocation_metadata()) or set()) & {"operator", "admin"})

    def _readable(self, row: ModelRow, context) -> ModelRow:
        """A client token (the museum app) reads the active version of a model and nothing else."""
        if not self._manages_models(context) and self.repository.active_version(row.name) != row.version:
            raise PermissionDenied(f"authorization: a client token reads only the active version of "
                                   f"{row.name!r}; version {row.version} needs role 'operator'")
        return row

    def _message(self, row: ModelRow) -> pb.Model:
        card = row.card
        return pb.Model(
            name=row.name, version=row.version, active=self.repository.active_version(row.name) == row.version,
            job_id=row.job_id, arch=card.get("arch", ""), class_names=card.get("class_names", []),
            metrics_json=json.dumps(card.get("metrics", {})), created_at=row.created_at, size_bytes=row.size_bytes,
            sha256=row.sha256,
            class_info=[pb.ClassInfo(name=n, description=d) for n, d in card.get("class_info", {}).items()],
            variants=[pb.ModelVariant(kind=v["kind"], size_bytes=v["size_bytes"], map=v["map"], ap50=v["ap50"],
                                      latency_ms_p50=v["latency_ms_p50"], parity_json=json.dumps(v["parity"]),
                                      refused=v["refused"]) for v in card.get("variants", [])])

    def _row(self, ref: pb.ModelRef) -> ModelRow:
        name = check_name(ref.name, "name")
        if ref.version < 0:
            raise InvalidArgument(f"version: {ref.version} must be >= 0")
        version = ref.version or self.repository.active_version(name)
        if not version:
            raise InvalidArgument(f"version: model {name!r} has no active version; name one")
        return self.store.get_model(name, version)

    @rpc_errors
    def ListModels(self, request, context):
        rows = self.store.list_models(request.name)
        if not self._manages_models(context):
            rows = [r for r in rows if self.repository.active_version(r.name) == r.version]
        return pb.ListModelsResponse(models=[self._message(r) for r in rows])

    @rpc_errors
    def GetModel(self, request, context):
        return self._message(self._readable(self._row(request), context))

    @rpc_errors
    def ActivateModel(self, request, context):
        if not request.version:
            raise InvalidArgument("version: required")
        row = self._row(request)
        self.repository.activate(row.name, row.version)
        return self._message(row)

    @rpc_errors
    def RollbackModel(self, request, context):
        name = check_name(request.name, "name")
        version = self.repository.rollback(name)
        return self._message(self.store.get_model(name, version))

    @rpc_errors
    def DeleteModel(self, request, context):
        if not request.version:
            raise InvalidArgument("version: required")
        row = self._row(request)
        self.repository.forget(row.name, row.version)
        self.store.delete_model(row.name, row.version)
        return pb.DeleteModelResponse()

    @rpc_errors
    def DownloadModel(self, request, context):
        row = self._readable(self._row(request), context)
        path = variant_file(row.onnx_path.parent, row.card, request.variant, f"model {row.name} v{row.version}")
        total = path.stat().st_size
        digest = hashlib.sha256()
        offset = 0
        with path.open("rb") as handle:
            while context.is_active():
                data = handle.read(DOWNLOAD_CHUNK)
                digest.update(data)
                last = offset + len(data) >= total
                yield pb.ModelChunk(data=data, offset=offset, total_bytes=total,
                                    sha256=digest.hexdigest() if last else "")
                offset += len(data)
                if last:
                    return

    @rpc_errors
    def SetClassInfo(self, request, context):
        row = self._row(request.model)
        known = set(row.card.get("class_names", []))
        info = {}
        if len(request.class_info) > len(known):
            raise InvalidArgument(f"class_info: {len(request.class_info)} entries for a model of {len(known)} classes")
        for index, item in enumerate(request.class_info):
            if item.name not in known:
                raise InvalidArgument(f"class_info[{index}].name: {item.name[:64]!r} is not a class of "
                                      f"{row.name} v{row.version} ({sorted(known)})")
            if len(item.description) > MAX_DESCRIPTION_CHARS:
                raise InvalidArgument(f"class_info[{index}].description: {len(item.description)} characters; "
                                      f"at most {MAX_DESCRIPTION_CHARS}")
            info[item.name] = item.description
        merged = {**row.card.get("class_info", {}), **info}
        row = self.store.update_model_card(row.name, row.version, class_info=merged)
        self.repository.set_descriptions(row.name, row.version, merged)
        return self._message(row)
