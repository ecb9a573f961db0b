"""TrainingService: start, inspect, cancel and watch training jobs."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Iterator

from artdet.v1 import artdet_pb2 as pb
from artdet.v1 import artdet_pb2_grpc as rpc
from artdet.detector.config import NAMED_WEIGHTS, TRAIN_SCHEMA, FieldSpec, TrainConfig
from artdet.detector.errors import InvalidArgument
from artdet.detector.events import read_events
from artdet.server.errors import rpc_errors
from artdet.server.jobs import TERMINAL, JobRunner, log_tail
from artdet.server.model_registry import resolve_base_model
from artdet.server.model_repository import ModelRepository
from artdet.server.names import check_name
from artdet.server.store import JobRow, Store

STATES = {"queued": pb.JOB_STATE_QUEUED, "running": pb.JOB_STATE_RUNNING, "succeeded": pb.JOB_STATE_SUCCEEDED,
          "failed": pb.JOB_STATE_FAILED, "cancelled": pb.JOB_STATE_CANCELLED}
STATE_NAMES = {v: k for k, v in STATES.items()}
# TrainingParameters' typed fields carry TrainConfig fields of the same name
TYPED_PARAMETERS = tuple(f.name for f in pb.TrainingParameters.DESCRIPTOR.fields if f.name not in ("augment", "extra"))
# options a remote caller may not set: they name files on the server or its hardware (the schema marks them)
SERVER_OWNED = frozenset(name for name, spec in TRAIN_SCHEMA.items() if spec.server_owned)
LOG_TAIL_LINES = 40
FINISHED_EVENT_GRACE_S = 5.0  # how long a watcher waits for the last events of a job whose row says it ended  # of a failed job's worker log, in its Job message
# bounds of the `extra` map: TrainConfig has a few dozen options, each with a short text form
EXTRA_MAX_ENTRIES = 64
EXTRA_MAX_KEY = 64
EXTRA_MAX_VALUE = 1024


def _extra_label(name: str) -> str:
    return f"parameters.extra[{name!r}]"


def _parse_option(name: str, text: str, spec: FieldSpec) -> Any:
    """The value of `extra[name]`; InvalidArgument naming the entry for garbage, inf and nan."""
    try:
        return spec.parse(text)
    except ValueError as exc:
        shown = repr(text) if len(text) <= 40 else repr(text[:37]) + "..."
        raise InvalidArgument(f"{_extra_label(name)}: {shown} {exc}") from None


def _check_extra(extra) -> None:
    if len(extra) > EXTRA_MAX_ENTRIES:
        raise InvalidArgument(f"parameters.extra: {len(extra)} entries; at most {EXTRA_MAX_ENTRIES}")
    for name, text in extra.items():
        if len(name) > EXTRA_MAX_KEY:
            raise InvalidArgument(f"parameters.extra: a key of {len(name)} characters; at most {EXTRA_MAX_KEY}")
        if name not in TRAIN_SCHEMA or name in SERVER_OWNED:
            raise InvalidArgument(f"parameters.extra: unknown or server-owned option {name!r}")
        if len(text) > EXTRA_MAX_VALUE:
            raise InvalidArgument(f"{_extra_label(name)}: a value of {len(text)} characters; "
                                  f"at most {EXTRA_MAX_VALUE}")


def parameter_label(params: pb.TrainingParameters):
    """The name a caller knows each TrainConfig field by: parameters.lr, parameters.extra['workers']."""
    extra = set(params.extra)
    return lambda name: _extra_label(name) if name in extra else f"parameters.{name}"


def config_from_parameters(params: pb.TrainingParameters, train: Path, images: Path) -> TrainConfig:
    """The job's TrainConfig; InvalidArgument for a malformed `extra` (ranges are validate()'s)."""
    config = TrainConfig(train=str(train), images=str(images))
    for name in TYPED_PARAMETERS:
        if params.HasField(name):
            setattr(config, name, getattr(params, name))
    if params.HasField("augment"):
        config.augment.enabled = params.augment
    _check_extra(params.extra)
    for name, text in params.extra.items():
        setattr(config, name, _parse_option(name, text, TRAIN_SCHEMA[name]))
    return config


def job_message(job: JobRow) -> pb.Job:
    metrics = job.run_dir / "metrics.json"
    return pb.Job(
        id=job.id, state=STATES[job.state], dataset_name=job.dataset_name, dataset_version=job.dataset_version,
        model_name=job.model_name, model_version=job.model_version, config_json=json.dumps(job.config),
        error=job.error, created_at=job.created_at, started_at=job.started_at, finished_at=job.finished_at,
        restarts=job.restarts, summary_json=metrics.read_text() if job.state in TERMINAL and metrics.is_file() else "",
        log_tail=log_tail(job.run_dir, LOG_TAIL_LINES) if job.state == "failed" else "")


# JobEvent's typed fields, filled from the event's field of the same name (or its metrics' field)
_TYPED_EVENT_FIELDS = tuple(f.name for f in pb.JobEvent.DESCRIPTOR.fields
                            if f.name not in ("job_id", "type", "time", "state", "payload_json"))


def event_message(job_id: str, event: dict[str, Any], state: str) -> pb.JobEvent:
    message = pb.JobEvent(job_id=job_id, type=event["type"], time=event["time"], state=STATES[state],
                          payload_json=json.dumps(event))
    values = {**(event.get("metrics") or {}), **event}
    for name in _TYPED_EVENT_FIELDS:
        value = values.get(name)
        if isinstance(value, dict):
            getattr(message, name).update(value)
        elif value is not None:
            setattr(message, name, value)
    return message


def follow_events(path: Path, finished, is_active, poll: float = 0.2,
                  grace: float = FINISHED_EVENT_GRACE_S) -> Iterator[dict[str, Any]]:
    """Every event in the file, then new ones as they are appended, until its "finished" event; or, once the
    job's row says it ended, until `grace` seconds pass without one (the runner records the state first, then
    the last events; a job that failed on a full disk may have none)."""
    offset = 0
    ended_at = None
    while True:
        done = finished()
        events, offset = read_events(path, offset)
        for event in events:
            yield event
            if event["type"] == "finished":
                return
        if not is_active():
            return
        if done:
            ended_at = ended_at or time.monotonic()
            if time.monotonic() - ended_at > grace:
                return
        time.sleep(poll)


class TrainingServicer(rpc.TrainingServiceServicer):
    def __init__(self, store: Store, runner: JobRunner, repository: ModelRepository):
        self.store = store
        self.runner = runner
        self.repository = repository

    @rpc_errors
    def StartJob(self, request, context):
        dataset = self.store.get_dataset(check_name(request.dataset_name, "dataset_name"), request.dataset_version)
        config = config_from_parameters(request.parameters, dataset.path / "annotations.json",
                                        dataset.path / "images")
        base = ""
        if request.WhichOneof("start_from") == "base_model":
            arch = request.parameters.arch if request.parameters.HasField("arch") else None
            model = resolve_base_model(self.store, self.repository, request.base_model.name,
                                       request.base_model.version, arch)
            config.arch, config.weights, base = model.arch, str(model.checkpoint), model.label
        elif request.WhichOneof("start_from") == "weights":
            if request.weights not in NAMED_WEIGHTS:
                raise InvalidArgument(f"weights: one of {list(NAMED_WEIGHTS)} (use base_model to retrain a "
                                      "registered model)")
            config.weights = request.weights
        config.validate(label=parameter_label(request.parameters))
        model_name = check_name(request.model_name or dataset.name, "model_name")
        return job_message(self.runner.submit(dataset, model_name, config.to_dict(), base))

    @rpc_errors
    def GetJob(self, request, context):
        return job_message(self.store.get_job(request.id))

    @rpc_errors
    def ListJobs(self, request, context):
        state = STATE_NAMES.get(request.state, "")
        return pb.ListJobsResponse(jobs=[job_message(j) for j in self.store.list_jobs(state)])

    @rpc_errors
    def CancelJob(self, request, context):
        return job_message(self.runner.cancel(request.id))

    @rpc_errors
    def DeleteJob(self, request, context):
        return pb.DeleteJobResponse(freed_bytes=self.runner.delete(request.id))

    @rpc_errors
    def WatchJob(self, request, context):
        job = self.store.get_job(request.id)
        path = job.run_dir / "events.jsonl"

        def finished() -> bool:
            return self.store.get_job(job.id).state in TERMINAL

        state = job.state
        for event in follow_events(path, finished, context.is_active):
            if event["type"] != "step":  # steps (the bulk of a replay) never change the job's state
                state = self.store.get_job(job.id).state
            yield event_message(job.id, event, state)
