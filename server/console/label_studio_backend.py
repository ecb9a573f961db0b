"""Label Studio's ML-backend protocol on the console's HTTP server, under /label-studio.

Connect it in a project's Settings → Model with the URL http://HOST:CONSOLE_PORT/label-studio, basic auth
on, any user name and an artdet token as the password (role client for pre-annotations; annotator and
operator too for training), and optionally extra params {"score_threshold": 0.1, "model": "NAME"}. Every
call becomes the RPCs any other client makes with that token:
- /health, /setup: the model version Label Studio tags predictions with (the active version of the model
  named in extra params, else of the one active model); /setup also brings the Label Studio address and API
  key, kept in memory, to read images and exports with. A project once set up keeps its address unless the
  same token sets it up again; `--label-studio-url` limits the addresses to one;
- /predict: each task's image, fetched from Label Studio, through Detect: rectangles in percent of the
  upright image, the project's labels only;
- /webhook (START_TRAINING, which Label Studio sends on "Start training") and /train: the project's
  annotations exported from Label Studio, pushed as a new version of dataset `label-studio-<project>`, and a
  job started with the settings of the job that trained the model in use. It answers at once (Label Studio
  waits 1 s); the job shows in `artdet jobs list` and the console. Label Studio sends webhooks without
  credentials: one only ever trains a project set up with a token before, on that project's own data, at
  most once a minute, and only as JSON (so no web page can send one from a browser).
Images and exports are read only from the address that set the project up: a redirect elsewhere is refused
(the API key would go with it), so images in cloud storage that Label Studio redirects to are not read.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import shutil
import tempfile
import time
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
from artdet.detector.errors import InvalidArgument, PermissionDenied, ResourceExhausted, show
from artdet.detector.label_studio import rectangle_control, rectangle_results
from artdet.detector.local_images import reference_path
from artdet.detector.results import Detection
from artdet.tools.client import training_parameters_of

log = logging.getLogger("artdet.label_studio")

PREFIX = "/label-studio"
MAX_TASKS_PER_PREDICT = 100
MAX_EXPORT_BYTES = 256 << 20
FETCH_TIMEOUT_S = 10.0
MIN_RETRAIN_INTERVAL_S = 60.0
# pre-annotations: lower than Detect's default, a curator deletes more easily than draws
PREDICT_THRESHOLD = 0.3
DETECT_ROLES = {"client", "admin"}


@dataclass
class Project:
    id: str
    hostname: str  # Label Studio's address, as it gave it in /setup
    api_key: str
    authorization: str  # the artdet credentials that set it up
    threshold: float = PREDICT_THRESHOLD
    model: str = ""  # the model named in extra params; empty: the one active model
    data_key: str = "image"  # the task data field its labelling config's Image reads
    started: float = 0.0  # when its last retraining started (monotonic)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # urllib then raises HTTPError with the 3xx code


_OPENER = urllib.request.build_opener(_NoRedirect)


def _project_id(value: Any) -> str:
    """Label Studio names a project "<id>.<created timestamp>" in /setup and /predict, by object in webhooks."""
    if isinstance(value, dict):
        value = value.get("id")
    text = str(value if value is not None else "").split(".")[0]
    if not text.isdigit() or len(text) > 18:
        raise InvalidArgument(f"project: {show(value, 40)} is not a Label Studio project id")
    return text


def _extra(extra: Any) -> tuple[float, str]:
    """(score threshold, model name) from the ML backend's extra params."""
    if isinstance(extra, str):
        try:
            extra = json.loads(extra or "{}")
        except ValueError:
            raise InvalidArgument("extra_params: not JSON") from None
    extra = extra if isinstance(extra, dict) else {}
    value, model = extra.get("score_threshold", PREDICT_THRESHOLD), extra.get("model", "")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise InvalidArgument(f"extra_params.score_threshold: a number from 0 to 1, got {show(value, 40)}")
    if not isinstance(model, str) or len(model) > 64:
        raise InvalidArgument(f"extra_params.model: a model name, got {show(model, 40)}")
    return float(value), model


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


def _image_reference(task: Any, data_key: str) -> str | None:
    data = task.get("data") if isinstance(task, dict) else None
    value = data.get(data_key) if isinstance(data, dict) else None
    return value if isinstance(value, str) else None


class LabelStudioBackend:
    def __init__(self, console, allowed_url: str = ""):
        self.console = console
        self.allowed_url = allowed_url.rstrip("/")
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
            with _OPENER.open(request, timeout=FETCH_TIMEOUT_S) as response:
                data = response.read(limit + 1)
        except urllib.error.HTTPError as exc:
            where = " (a redirect elsewhere: not followed)" if 300 <= exc.code < 400 else ""
            raise InvalidArgument(f"{show(reference, 80)}: Label Studio answered {exc.code}{where}") from None
        except (urllib.error.URLError, TimeoutError, OSError):
            raise InvalidArgument(f"{show(reference, 80)}: Label Studio cannot be reached") from None
        if len(data) > limit:
            raise ResourceExhausted(f"{show(reference, 80)}: larger than {limit} bytes")
        return data

    # -- the protocol -------------------------------------------------------------------------
    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "UP", "model_class": "artdet"})

    async def _caller(self, authorization: str, model: str) -> tuple[set[str], pb.ModelRef | None]:
        """The caller's roles (UNAUTHENTICATED for an unknown token) and the active model version it predicts with."""
        info = await self.console.stub(rpc.ServerServiceStub).GetServerInfo(
            pb.GetServerInfoRequest(), metadata=self.metadata(authorization))
        active = [m for m in info.models_active if not model or m.name == model]
        if len(active) > 1:
            raise InvalidArgument(f"extra_params.model: {len(active)} models are active "
                                  f"({', '.join(m.name for m in active)}); name one")
        return set(info.roles), (active[0] if active else None)

    async def setup(self, request: Request) -> Response:
        body = await self.console.json_body(request)
        project_id = _project_id(body.get("project"))
        *_, data_key = rectangle_control(str(body.get("schema") or ""))
        authorization = _bearer(request)
        threshold, model = _extra(body.get("extra_params"))
        roles, active = await self._caller(authorization, model)  # an unknown token stops here
        if not roles & DETECT_ROLES:
            raise PermissionDenied("the token needs the client role to give pre-annotations")
        hostname, api_key = body.get("hostname"), body.get("access_token")
        if isinstance(hostname, str) and hostname.startswith(("http://", "https://")) and isinstance(api_key, str):
            hostname = hostname.rstrip("/")
            if self.allowed_url and hostname != self.allowed_url:
                raise PermissionDenied(f"hostname: this server works with the Label Studio at {self.allowed_url} "
                                       "only")
            known = self.projects.get(project_id)
            if known and known.hostname != hostname and known.authorization != authorization:
                raise PermissionDenied(f"project {project_id}: set up from another address with another token")
            self.projects[project_id] = Project(project_id, hostname, api_key, authorization, threshold, model,
                                                data_key=data_key)
        return JSONResponse({"model_version": f"{active.name}:v{active.version}" if active else "none"})

    async def predict(self, request: Request) -> Response:
        body = await self.console.json_body(request)
        tasks = body.get("tasks")
        if not isinstance(tasks, list) or len(tasks) > MAX_TASKS_PER_PREDICT:
            raise InvalidArgument(f"tasks: a list of at most {MAX_TASKS_PER_PREDICT} tasks is required")
        from_name, to_name, labels, data_key = rectangle_control(str(body.get("label_config") or ""))
        project = self.projects.get(_project_id(body.get("project")))
        if project is None:
            raise InvalidArgument("project: not set up with this backend yet (Label Studio calls /setup first)")
        authorization = _bearer(request)
        roles, _ = await self._caller(authorization, project.model)  # nothing is fetched for an unknown caller
        if not roles & DETECT_ROLES:
            raise PermissionDenied("the token needs the client role to give pre-annotations")
        stub = self.console.stub(rpc.DetectionServiceStub)
        results = []
        for task in tasks:
            reference = _image_reference(task, data_key)
            try:
                if reference is None:
                    raise InvalidArgument(f"task: no ${data_key} in its data")
                image = await run_in_threadpool(self._fetch, project, reference, self.console.max_image_bytes)
                reply = await stub.Detect(pb.DetectRequest(image=image, score_threshold=project.threshold,
                                                           model_name=project.model),
                                          metadata=self.metadata(authorization))
            except (InvalidArgument, ResourceExhausted, grpc.aio.AioRpcError) as exc:
                # one task's image that cannot be read or decoded does not sink the batch: it gets no boxes
                message = exc.details() if isinstance(exc, grpc.aio.AioRpcError) else str(exc)
                log.warning("label studio project %s: no prediction for a task: %s", project.id, message)
                results.append({"result": [], "score": 0.0})
                continue
            detections = [Detection((d.box.x1, d.box.y1, d.box.x2, d.box.y2), d.score, d.label_id, d.label)
                          for d in reply.detections if d.label in labels]  # the project's labels only
            results.append({"result": rectangle_results(detections, reply.width, reply.height, from_name, to_name),
                            "score": max((d.score for d in detections), default=0.0),
                            "model_version": f"{reply.model_name}:v{reply.model_version}"})
        return JSONResponse({"results": results})

    @staticmethod
    def _require_json(request: Request) -> None:
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            raise InvalidArgument("Content-Type: application/json is required")

    async def webhook(self, request: Request) -> Response:
        self._require_json(request)
        body = await self.console.json_body(request)
        if body.get("action") != "START_TRAINING":
            return JSONResponse({"status": "ignored", "action": str(body.get("action"))[:40]})
        return self._start_training(_project_id(body.get("project")))

    async def train(self, request: Request) -> Response:
        self._require_json(request)
        body = await self.console.json_body(request)
        return self._start_training(_project_id(body.get("project")))

    def _start_training(self, project_id: str) -> Response:
        project = self.projects.get(project_id)
        if project is None:
            raise InvalidArgument(f"project {project_id}: not set up with this backend (connect it in Label Studio)")
        running = self.training.get(project_id)
        if running is not None and not running.done():
            return JSONResponse({"status": "already pushing this project's annotations"}, status_code=202)
        waited = time.monotonic() - project.started
        if project.started and waited < MIN_RETRAIN_INTERVAL_S:
            raise ResourceExhausted(f"project {project_id}: training started {waited:.0f} s ago; at most once a "
                                    "minute")
        project.started = time.monotonic()
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
        export = self._fetch(project, f"/api/projects/{project.id}/export?exportType=JSON",
                             min(limit, MAX_EXPORT_BYTES))
        (scratch / "export.json").write_bytes(export)
        used = len(export)
        try:
            tasks = json.loads(export)
        except ValueError:
            raise InvalidArgument(f"project {project.id}: Label Studio's export is not JSON") from None
        for task in tasks if isinstance(tasks, list) else []:
            reference = _image_reference(task, project.data_key)
            if reference is None or not task.get("annotations"):
                continue
            data = self._fetch(project, reference, self.console.max_image_bytes)
            used += len(data)
            if used > limit:
                raise ResourceExhausted(f"project {project.id}: its images exceed the upload limit of {limit} bytes")
            # under the path it has in the export (local storage's ?d=PATH too), where the conversion looks first
            place_file(scratch, reference_path(reference), "image").write_bytes(data)

    async def _settings(self, model: pb.ModelRef, metadata) -> tuple[pb.TrainingParameters, str]:
        """(parameters, weights) of the job that trained `model`; the defaults for a model registered otherwise."""
        registered = await self.console.stub(rpc.ModelServiceStub).GetModel(model, metadata=metadata)
        try:
            job = await self.console.stub(rpc.TrainingServiceStub).GetJob(pb.GetJobRequest(id=registered.job_id),
                                                                       metadata=metadata)
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:
                raise
            log.info("model %s v%d has no job on this server: retraining with the default settings", model.name,
                     model.version)
            return pb.TrainingParameters(), "coco"
        config = json.loads(job.config_json)
        weights = config.get("weights") if config.get("weights") in ("coco", "none") else "coco"
        return training_parameters_of(config, (config.get("augment") or {}).get("enabled")), weights

    async def retrain(self, project: Project) -> pb.Job:
        metadata = self.metadata(project.authorization)
        scratch = Path(tempfile.mkdtemp(prefix="label-studio-", dir=self.console.scratch_root))
        try:
            await run_in_threadpool(self._export, project, scratch)
            dataset = await self.console.push_laid_out(f"label-studio-{project.id}", scratch, metadata)
        finally:
            await run_in_threadpool(shutil.rmtree, scratch, True)
        request = pb.StartJobRequest(dataset_name=dataset.name, dataset_version=dataset.version)
        _, active = await self._caller(project.authorization, project.model)
        if active is not None:  # the settings the model in use was trained with, under its name
            parameters, request.weights = await self._settings(active, metadata)
            request.parameters.CopyFrom(parameters)
            request.model_name = active.name
        return await self.console.stub(rpc.TrainingServiceStub).StartJob(request, metadata=metadata)

    def routes(self) -> list[tuple[str, Any, list[str]]]:
        return [(f"{PREFIX}/health", self.health, ["GET"]), (f"{PREFIX}/setup", self.setup, ["POST"]),
                (f"{PREFIX}/predict", self.predict, ["POST"]), (f"{PREFIX}/webhook", self.webhook, ["POST"]),
                (f"{PREFIX}/train", self.train, ["POST"])]
