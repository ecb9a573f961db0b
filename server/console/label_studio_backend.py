"""Label Studio's ML-backend protocol on the console's HTTP server, under /label-studio.

Connect it in a project's Settings → Model with the URL http://HOST:CONSOLE_PORT/label-studio, basic auth
on, any user name and an artdet token as the password (roles client for pre-annotations; annotator and
operator too for training). Every call becomes the RPCs any other client makes with that token:
- /health, /setup: the model version Label Studio tags predictions with (the server's default model);
  /setup also brings the Label Studio address and API key, kept in memory, to read images and exports with;
- /predict: each task's image, fetched from Label Studio, through Detect: rectangles in percent of the
  upright image, the project's labels only;
- /webhook (START_TRAINING, which Label Studio sends on "Start training") and /train: the project's
  annotations exported from Label Studio, pushed as a new version of dataset `label-studio-<project>`, and a
  job started with the settings of the job that trained the model in use. It answers at once (Label Studio
  waits 1 s); the job shows in `artdet jobs list` and the console. Label Studio sends webhooks without
  credentials: one only ever trains a project set up with a token before, on that project's own data.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from artdet.v1 import artdet_pb2 as pb
from artdet.v1 import artdet_pb2_grpc as rpc
from artdet.detector.archives import place_file
from artdet.detector.errors import InvalidArgument, ResourceExhausted, show
from artdet.detector.label_studio import rectangle_control, rectangle_results
from artdet.detector.results import Detection
from artdet.tools.client import training_parameters_of

log = logging.getLogger("artdet.label_studio")

PREFIX = "/label-studio"
MAX_TASKS_PER_PREDICT = 100
FETCH_TIMEOUT_S = 30.0
# pre-annotations: lower than Detect's default, a curator deletes more easily than draws; the ML backend's
# "extra params" in Label Studio may set {"score_threshold": 0.1}
PREDICT_THRESHOLD = 0.3


@dataclass
class Project:
    id: str
    hostname: str  # Label Studio's address, as it gave it in /setup
    api_key: str
    authorization: str  # the artdet credentials that set it up
    threshold: float = PREDICT_THRESHOLD


def _project_id(value: Any) -> str:
    """Label Studio names a project "<id>.<created timestamp>" in /setup and /predict, by object in webhooks."""
    if isinstance(value, dict):
        value = value.get("id")
    text = str(value if value is not None else "").split(".")[0]
    if not text.isdigit():
        raise InvalidArgument(f"project: {show(value, 40)} is not a Label Studio project id")
    return text


def _threshold(extra: Any) -> float:
    if isinstance(extra, str):
        try:
            extra = json.loads(extra or "{}")
        except ValueError:
            raise InvalidArgument("extra_params: not JSON") from None
    value = extra.get("score_threshold", PREDICT_THRESHOLD) if isinstance(extra, dict) else PREDICT_THRESHOLD
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise InvalidArgument(f"extra_params.score_threshold: a number from 0 to 1, got {show(value, 40)}")
    return float(value)


def _bearer(request: Request) -> str:
    """Label Studio's basic auth (password = artdet token) as the bearer header the RPCs take."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "basic":
        try:
            _, _, password = base64.b64decode(value, validate=True).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return ""
        return f"Bearer {password}" if password else ""
    return header


class LabelStudioBackend:
    def __init__(self, console):
        self.console = console
        self.projects: dict[str, Project] = {}
        self.training: dict[str, asyncio.Task] = {}

    def metadata(self, authorization: str) -> tuple[tuple[str, str], ...]:
        return (("authorization", authorization),) if authorization else ()

    # -- fetching from Label Studio -----------------------------------------------------------
    def _url(self, project: Project, reference: str) -> str:
        """A task's image or an API path, on the Label Studio the project was set up from (nowhere else)."""
        base = urllib.parse.urlsplit(project.hostname)
        target = urllib.parse.urlsplit(urllib.parse.urljoin(project.hostname.rstrip("/") + "/", reference))
        if (target.scheme, target.netloc) != (base.scheme, base.netloc) or target.scheme not in ("http", "https"):
            raise InvalidArgument(f"image {show(reference, 80)}: only images Label Studio itself serves can be "
                                  "fetched")
        return target.geturl()

    def _fetch(self, project: Project, reference: str, limit: int) -> bytes:
        request = urllib.request.Request(self._url(project, reference),
                                         headers={"Authorization": f"Token {project.api_key}"})
        try:
            with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT_S) as response:  # noqa: S310 - http(s) only
                data = response.read(limit + 1)
        except urllib.error.HTTPError as exc:
            raise InvalidArgument(f"{show(reference, 80)}: Label Studio answered {exc.code}") from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise InvalidArgument(f"{show(reference, 80)}: Label Studio cannot be reached ({reason})") from None
        if len(data) > limit:
            raise ResourceExhausted(f"{show(reference, 80)}: larger than {limit} bytes")
        return data

    # -- the protocol -------------------------------------------------------------------------
    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "UP", "model_class": "artdet"})

    async def _model_version(self, authorization: str) -> str:
        info = await self.console.stub(rpc.ServerServiceStub).GetServerInfo(
            pb.GetServerInfoRequest(), metadata=self.metadata(authorization))
        active = list(info.models_active)
        return f"{active[0].name}:v{active[0].version}" if active else "none"

    async def setup(self, request: Request) -> Response:
        body = await self.console.json_body(request)
        project = _project_id(body.get("project"))
        rectangle_control(str(body.get("schema") or ""))
        authorization = _bearer(request)
        threshold = _threshold(body.get("extra_params"))
        version = await self._model_version(authorization)  # a caller without a valid token stops here
        hostname, api_key = body.get("hostname"), body.get("access_token")
        if isinstance(hostname, str) and hostname.startswith(("http://", "https://")) and isinstance(api_key, str):
            self.projects[project] = Project(project, hostname, api_key, authorization, threshold)
        return JSONResponse({"model_version": version})

    async def predict(self, request: Request) -> Response:
        body = await self.console.json_body(request)
        tasks = body.get("tasks")
        if not isinstance(tasks, list) or len(tasks) > MAX_TASKS_PER_PREDICT:
            raise InvalidArgument(f"tasks: a list of at most {MAX_TASKS_PER_PREDICT} tasks is required")
        from_name, to_name, labels = rectangle_control(str(body.get("label_config") or ""))
        project = self.projects.get(_project_id(body.get("project")))
        if project is None:
            raise InvalidArgument("project: not set up with this backend yet (Label Studio calls /setup first)")
        authorization = _bearer(request)
        stub = self.console.stub(rpc.DetectionServiceStub)
        results = []
        for task in tasks:
            reference = (task.get("data") or {}).get("image") if isinstance(task, dict) else None
            if not isinstance(reference, str):
                results.append({"result": [], "score": 0.0})
                continue
            image = await run_in_threadpool(self._fetch, project, reference, self.console.max_image_bytes)
            reply = await stub.Detect(pb.DetectRequest(image=image, score_threshold=project.threshold),
                                      metadata=self.metadata(authorization))
            detections = [Detection((d.box.x1, d.box.y1, d.box.x2, d.box.y2), d.score, d.label_id, d.label)
                          for d in reply.detections if d.label in labels]  # the project's labels only
            results.append({"result": rectangle_results(detections, reply.width, reply.height, from_name, to_name),
                            "score": max((d.score for d in detections), default=0.0),
                            "model_version": f"{reply.model_name}:v{reply.model_version}"})
        return JSONResponse({"results": results})

    async def webhook(self, request: Request) -> Response:
        body = await self.console.json_body(request)
        if body.get("action") != "START_TRAINING":
            return JSONResponse({"status": "ignored", "action": str(body.get("action"))[:40]})
        return self._start_training(_project_id(body.get("project")))

    async def train(self, request: Request) -> Response:
        body = await self.console.json_body(request)
        return self._start_training(_project_id(body.get("project")))

    def _start_training(self, project_id: str) -> Response:
        project = self.projects.get(project_id)
        if project is None:
            raise InvalidArgument(f"project {project_id}: not set up with this backend (connect it in Label Studio)")
        running = self.training.get(project_id)
        if running is not None and not running.done():
            return JSONResponse({"status": "already pushing this project's annotations"}, status_code=202)
        self.training[project_id] = asyncio.get_running_loop().create_task(self._train(project))
        return JSONResponse({"status": "started"}, status_code=201)

    async def _train(self, project: Project) -> None:
        try:
            job = await self.retrain(project)
            log.info("label studio project %s: job %s started", project.id, job.id)
        except grpc.aio.AioRpcError as exc:
            log.warning("label studio project %s: training not started: %s %s", project.id, exc.code().name,
                        exc.details())
        except Exception as exc:  # noqa: BLE001 - the webhook has answered; the log is where this can go
            log.warning("label studio project %s: training not started: %s", project.id, exc)

    def _export(self, project: Project, scratch: Path) -> None:
        """The project's tasks (JSON export) and the images of the annotated ones, laid out under `scratch`."""
        limit = self.console.max_upload_bytes
        export = self._fetch(project, f"/api/projects/{project.id}/export?exportType=JSON", limit)
        (scratch / "export.json").write_bytes(export)
        used = len(export)
        for task in json.loads(export):
            reference = (task.get("data") or {}).get("image")
            if not task.get("annotations") or not isinstance(reference, str):
                continue
            data = self._fetch(project, reference, self.console.max_image_bytes)
            used += len(data)
            if used > limit:
                raise ResourceExhausted(f"project {project.id}: its images exceed the upload limit of {limit} bytes")
            # under the path it has in the export, where the conversion looks first
            place_file(scratch, urllib.parse.urlsplit(reference).path, "image").write_bytes(data)

    async def retrain(self, project: Project) -> pb.Job:
        metadata = self.metadata(project.authorization)
        scratch = Path(tempfile.mkdtemp(prefix="label-studio-", dir=self.console.scratch_root))
        try:
            await run_in_threadpool(self._export, project, scratch)
            dataset = await self.console.push_laid_out(f"label-studio-{project.id}", scratch, metadata)
        finally:
            await run_in_threadpool(shutil.rmtree, scratch, True)
        request = pb.StartJobRequest(dataset_name=dataset.name, dataset_version=dataset.version)
        info = await self.console.stub(rpc.ServerServiceStub).GetServerInfo(pb.GetServerInfoRequest(),
                                                                          metadata=metadata)
        if info.models_active:  # the settings the model in use was trained with, under its name
            active = info.models_active[0]
            model = await self.console.stub(rpc.ModelServiceStub).GetModel(
                pb.ModelRef(name=active.name, version=active.version), metadata=metadata)
            previous = await self.console.stub(rpc.TrainingServiceStub).GetJob(pb.GetJobRequest(id=model.job_id),
                                                                            metadata=metadata)
            config = json.loads(previous.config_json)
            request.parameters.CopyFrom(training_parameters_of(config, config.get("augment", {}).get("enabled")))
            request.weights = config.get("weights") if config.get("weights") in ("coco", "none") else "coco"
            request.model_name = active.name
        return await self.console.stub(rpc.TrainingServiceStub).StartJob(request, metadata=metadata)

    def routes(self) -> list[tuple[str, Any, list[str]]]:
        return [(f"{PREFIX}/health", self.health, ["GET"]), (f"{PREFIX}/setup", self.setup, ["POST"]),
                (f"{PREFIX}/predict", self.predict, ["POST"]), (f"{PREFIX}/webhook", self.webhook, ["POST"]),
                (f"{PREFIX}/train", self.train, ["POST"])]
