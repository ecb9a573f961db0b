"""The registered models as training sees them: a finished job's export becomes a model version, and a
registered version is resolved to the checkpoint a new job retrains from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from artdet.detector.errors import InvalidArgument
from artdet.detector.model_card import ModelCard
from artdet.server.model_repository import ModelRepository
from artdet.server.names import check_name
from artdet.server.store import JobRow, Store


@dataclass(frozen=True)
class BaseModel:
    arch: str
    checkpoint: Path  # best.pt of the job that trained it
    label: str  # "<name>/<version>", as the new job records it


def register_model(store: Store, job: JobRow, result: dict[str, Any]) -> int:
    """The version under which the job's exported model.onnx is registered, with its card."""
    summary, export = result["summary"], result["export"]
    model = ModelCard.from_metadata(export["metadata"], f"the model of job {job.id}")
    card = {
        "arch": model.arch,
        "class_names": model.class_names,
        "metrics": {k: summary.get(k) for k in ("baseline", "final", "per_class_ap", "improvement_map", "strategy",
                                                "warm_started_classes", "run_id")},
        "parity": export["parity"],
        "dataset": f"{job.dataset_name}/v{job.dataset_version}",
        "variants": [{k: v for k, v in variant.items() if k != "path"} | {"file": variant["path"]}
                     for variant in result.get("variants", [])],
    }
    files = {v["path"]: job.run_dir / v["path"] for v in result.get("variants", []) if v["path"]}
    return store.add_model(job.model_name, job.id, job.run_dir / "model.onnx", card, files).version


def resolve_base_model(store: Store, repository: ModelRepository, name: str, version: int,
                       arch: str | None) -> BaseModel:
    """Model `name` at `version` (0: the active one) as a starting point; InvalidArgument when its checkpoint
    is gone or it is not of the requested `arch` (None: any)."""
    version = version or repository.active_version(name)
    model = store.get_model(check_name(name, "base_model.name"), version)
    checkpoint = store.run_dir(model.job_id) / "checkpoints" / "best.pt"
    if not checkpoint.is_file():
        raise InvalidArgument(f"base_model: model {name} v{version} has no training checkpoint "
                              f"left on the server to retrain from")
    if arch is not None and arch != model.card["arch"]:
        raise InvalidArgument(f"parameters.arch: base_model {name} v{version} is a "
                              f"{model.card['arch']}, not {arch}")
    return BaseModel(model.card["arch"], checkpoint, f"{name}/{version}")
