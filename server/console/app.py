"""The web console's HTTP layer: JSON endpoints that each make one artdet RPC on the server's own gRPC port
(a private Unix socket), forwarding the browser's bearer token. Every rule (roles, validation, limits, error
messages) is the RPC's; this layer only translates HTTP to gRPC and back, and serves the page's files.

The token travels in the Authorization header, never in a cookie or a URL, so another site cannot make the
browser act (no CSRF) and links never carry it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import tempfile
import uuid
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import grpc
from google.protobuf import json_format
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from artdet.v1 import artdet_pb2 as pb
from artdet.v1 import artdet_pb2_grpc as rpc
from artdet.detector.annotation_formats import find_annotations
from artdet.detector.config import TRAIN_SCHEMA
from artdet.server.console.label_studio_backend import LabelStudioBackend
from artdet.server.console.uploads import discard, lay_out
from artdet.server.errors import status_of
from artdet.tools.client import upload_requests

log = logging.getLogger("artdet.console")

STATIC = Path(__file__).parent / "static"
HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401, grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404, grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.FAILED_PRECONDITION: 409, grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429, grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNIMPLEMENTED: 501, grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504, grpc.StatusCode.DATA_LOSS: 500, grpc.StatusCode.INTERNAL: 500,
}
# what the training form offers; every other option keeps the engine's default (the CLI and RPC reach them all)
FORM_OPTIONS = ("strategy", "arch", "stage1_epochs", "stage2_epochs", "lr", "batch_size", "max_size",
                "max_iters_per_epoch", "patience", "seed")
MAX_JSON_BYTES = 1 << 20
KEEPALIVE_SECONDS = 15.0
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; "
                               "script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store",
}


class HttpError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def to_json(message) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True, unquote_int64_if_possible=True)


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=status, headers=SECURITY_HEADERS)


def _rpc_error(exc: grpc.aio.AioRpcError) -> JSONResponse:
    return _error(HTTP_STATUS.get(exc.code(), 500), exc.code().name, exc.details() or exc.code().name)


class Console:
    def __init__(self, grpc_target: str, scratch_root: Path, max_upload_bytes: int, max_image_bytes: int,
                 label_studio_url: str = ""):
        self.grpc_target = grpc_target
        self.label_studio_url = label_studio_url
        self.scratch_root = scratch_root
        self.max_upload_bytes = max_upload_bytes
        self.max_image_bytes = max_image_bytes
        self.channel: grpc.aio.Channel | None = None

    @contextlib.asynccontextmanager
    async def lifespan(self, _app) -> AsyncIterator[None]:
        options = [("grpc.max_receive_message_length", self.max_image_bytes + (1 << 20)),
                   ("grpc.max_send_message_length", self.max_image_bytes + (1 << 20))]
        self.channel = grpc.aio.insecure_channel(self.grpc_target, options=options)
        yield
        await self.channel.close()

    # -- plumbing -------------------------------------------------------------------------------
    def stub(self, kind: type):
        return kind(self.channel)

    @staticmethod
    def metadata(request: Request) -> tuple[tuple[str, str], ...]:
        header = request.headers.get("authorization", "")
        return (("authorization", header),) if header else ()

    def endpoint(self, handler: Callable) -> Callable:
        """RPC failures become the same code and message over HTTP; our own refusals too; nothing else leaks."""
        async def wrapped(request: Request) -> Response:
            try:
                response = await handler(request)
            except grpc.aio.AioRpcError as exc:
                return _rpc_error(exc)
            except HttpError as exc:
                return _error(exc.status, exc.code, exc.message)
            except StarletteHTTPException as exc:  # a malformed multipart body
                return _error(exc.status_code, "INVALID_ARGUMENT", f"request body: {exc.detail}")
            except Exception as exc:  # noqa: BLE001 - our own checks before any RPC, a full disk, or a bug
                code, message = status_of(exc)
                if code == grpc.StatusCode.INTERNAL:
                    request_id = uuid.uuid4().hex[:12]
                    log.error("console request %s (%s %s) failed", request_id, request.method, request.url.path,
                              exc_info=exc)
                    message = f"internal error (request id {request_id}; the server log has the details)"
                return _error(HTTP_STATUS[code], code.name, message)
            response.headers.update({k: v for k, v in SECURITY_HEADERS.items() if k not in response.headers})
            return response
        return wrapped

    @staticmethod
    async def json_body(request: Request) -> dict[str, Any]:
        body = await _read_limited(request, MAX_JSON_BYTES, "request body")
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            raise HttpError(400, "INVALID_ARGUMENT", "request body: not JSON") from None
        if not isinstance(data, dict):
            raise HttpError(400, "INVALID_ARGUMENT", "request body: a JSON object is required")
        return data

    @staticmethod
    def parse(data: dict[str, Any], message_type: type, field: str = "request body"):
        try:
            return json_format.ParseDict(data, message_type())
        except json_format.ParseError as exc:
            raise HttpError(400, "INVALID_ARGUMENT", f"{field}: {exc}") from None

    @staticmethod
    def version(request: Request, key: str = "version") -> int:
        text = request.path_params.get(key) or request.query_params.get(key) or "0"
        if not text.isdigit() or int(text) > 2**31 - 1:
            raise HttpError(400, "INVALID_ARGUMENT", f"{key}: {text[:20]!r} is not a version number")
        return int(text)

    async def push_laid_out(self, name: str, scratch: Path, metadata) -> pb.Dataset:
        """The dataset laid out under `scratch` (as a tool exports one) through UploadDataset."""
        annotation, images = await run_in_threadpool(find_annotations, scratch)
        requests = upload_requests(name, annotation, images, progress=False)

        async def stream():
            while (message := await run_in_threadpool(next, requests, None)) is not None:
                yield message

        return await self.stub(rpc.DatasetServiceStub).UploadDataset(stream(), metadata=metadata)

    # -- endpoints ------------------------------------------------------------------------------
    async def info(self, request: Request) -> Response:
        reply = await self.stub(rpc.ServerServiceStub).GetServerInfo(pb.GetServerInfoRequest(),
                                                                     metadata=self.metadata(request))
        return JSONResponse(to_json(reply))

    async def schema(self, request: Request) -> Response:
        fields = []
        for name in FORM_OPTIONS:
            spec = TRAIN_SCHEMA[name]
            fields.append({"name": name, "kind": spec.kind, "default": spec.default, "help": spec.help,
                           "choices": list(spec.choices or ()), "min": spec.low, "max": spec.high,
                           "optional": spec.optional})
        return JSONResponse({"fields": fields, "weights": ["coco", "none"]})

    async def list_datasets(self, request: Request) -> Response:
        reply = await self.stub(rpc.DatasetServiceStub).ListDatasets(
            pb.ListDatasetsRequest(name=request.query_params.get("name", "")), metadata=self.metadata(request))
        return JSONResponse(to_json(reply))

    async def dataset_images(self, request: Request) -> Response:
        query = request.query_params
        size = query.get("page_size", "0")
        if not size.isdigit():
            raise HttpError(400, "INVALID_ARGUMENT", "page_size: not a number")
        reply = await self.stub(rpc.DatasetServiceStub).ListDatasetImages(pb.ListDatasetImagesRequest(
            name=request.path_params["name"], version=self.version(request), page_size=min(int(size), 2**31 - 1),
            page_token=query.get("page_token", "")), metadata=self.metadata(request))
        return JSONResponse(to_json(reply))

    async def thumbnail(self, request: Request) -> Response:
        side, image_id = request.query_params.get("max_side", "0"), request.path_params["image_id"]
        if not side.isdigit() or not image_id.isdigit():
            raise HttpError(400, "INVALID_ARGUMENT", "max_side and the image id are whole numbers")
        reply = await self.stub(rpc.DatasetServiceStub).GetDatasetImage(pb.GetDatasetImageRequest(
            name=request.path_params["name"], version=self.version(request), image_id=min(int(image_id), 2**62),
            max_side=min(int(side), 2**31 - 1)), metadata=self.metadata(request))
        return Response(reply.jpeg, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    async def upload_dataset(self, request: Request) -> Response:
        name = request.query_params.get("name", "")
        length = request.headers.get("content-length", "")
        if not length.isdigit():
            raise HttpError(411, "INVALID_ARGUMENT", "Content-Length: required for uploads")
        if int(length) > self.max_upload_bytes:
            raise HttpError(413, "RESOURCE_EXHAUSTED", f"upload exceeds the server's limit of "
                                                       f"{self.max_upload_bytes} bytes")
        scratch = Path(tempfile.mkdtemp(prefix="console-upload-", dir=self.scratch_root))
        try:
            async with request.form(max_files=200_000, max_fields=8, max_part_size=MAX_JSON_BYTES) as form:
                files = [(part.filename or "", part.file) for part in form.getlist("files")
                         if hasattr(part, "file")]
                if not files:
                    raise HttpError(400, "INVALID_ARGUMENT", "files: no file in the upload")
                await run_in_threadpool(lay_out, files, scratch, self.max_upload_bytes)
            reply = await self.push_laid_out(name, scratch, self.metadata(request))
            return JSONResponse(to_json(reply))
        finally:
            await run_in_threadpool(discard, scratch)

    async def delete_dataset(self, request: Request) -> Response:
        reply = await self.stub(rpc.DatasetServiceStub).DeleteDataset(pb.DeleteDatasetRequest(
            name=request.path_params["name"], version=self.version(request)), metadata=self.metadata(request))
        return JSONResponse(to_json(reply))

    async def list_jobs(self, request: Request) -> Response:
        reply = await self.stub(rpc.TrainingServiceStub).ListJobs(pb.ListJobsRequest(),
                                                                  metadata=self.metadata(request))
        return JSONResponse(to_json(reply))

    async def get_job(self, request: Request) -> Response:
        reply = await self.stub(rpc.TrainingServiceStub).GetJob(pb.GetJobRequest(id=request.path_params["id"]),
                                                                metadata=self.metadata(request))
        return JSONResponse(to_json(reply))

    async def start_job(self, request: Request) -> Response:
        start = self.parse(await self.json_body(request), pb.StartJobRequest)
        reply = await self.stub(rpc.TrainingServiceStub).StartJob(start, metadata=self.metadata(request))
        return JSONResponse(to_json(reply))

    async def cancel_job(self, request: Request) -> Response:
        reply = await self.stub(rpc.TrainingServiceStub).CancelJob(
            pb.CancelJobRequest(id=request.path_params["id"]), metadata=self.metadata(request))
        return JSONResponse(to_json(reply))

    async def job_events(self, request: Request) -> Response:
        """WatchJob as server-sent events (read with fetch, so the token stays in a header): the first event
        or the call's error before any byte is sent, then one `data:` line per event and comments that keep
        idle connections open and find clients that left."""
        call = self.stub(rpc.TrainingServiceStub).WatchJob(pb.WatchJobRequest(id=request.path_params["id"]),
                                                           metadata=self.metadata(request))
        first = await call.read()  # an AioRpcError here is the endpoint's error response

        async def events() -> AsyncIterator[str]:
            message = first
            try:
                while message is not grpc.aio.EOF:
                    yield f"data: {json.dumps(to_json(message))}\n\n"
                    reading = asyncio.ensure_future(call.read())
                    while not (await asyncio.wait({reading}, timeout=KEEPALIVE_SECONDS))[0]:
                        yield ": keep-alive\n\n"
                    message = reading.result()
                yield "event: end\ndata: {}\n\n"
            except grpc.aio.AioRpcError as exc:
                yield f"event: error\ndata: {json.dumps({'code': exc.code().name, 'message': exc.details()})}\n\n"
            finally:
                call.cancel()

        return StreamingResponse(events(), media_type="text/event-stream")

    async def list_models(self, request: Request) -> Response:
        reply = await self.stub(rpc.ModelServiceStub).ListModels(pb.ListModelsRequest(),
                                                                 metadata=self.metadata(request))
        return JSONResponse(to_json(reply))

    def _ref(self, request: Request) -> pb.ModelRef:
        return pb.ModelRef(name=request.path_params["name"], version=self.version(request))

    async def activate_model(self, request: Request) -> Response:
        reply = await self.stub(rpc.ModelServiceStub).ActivateModel(self._ref(request),
                                                                    metadata=self.metadata(request))
        return JSONResponse(to_json(reply))

    async def rollback_model(self, request: Request) -> Response:
        reply = await self.stub(rpc.ModelServiceStub).RollbackModel(
            pb.RollbackModelRequest(name=request.path_params["name"]), metadata=self.metadata(request))
        return JSONResponse(to_json(reply))

    async def delete_model(self, request: Request) -> Response:
        await self.stub(rpc.ModelServiceStub).DeleteModel(self._ref(request), metadata=self.metadata(request))
        return JSONResponse({})

    async def set_class_info(self, request: Request) -> Response:
        body = await self.json_body(request)
        message = self.parse({"class_info": body.get("class_info", [])}, pb.SetClassInfoRequest)
        message.model.CopyFrom(self._ref(request))
        reply = await self.stub(rpc.ModelServiceStub).SetClassInfo(message, metadata=self.metadata(request))
        return JSONResponse(to_json(reply))

    async def download_model(self, request: Request) -> Response:
        ref = self._ref(request)
        ref.variant = request.query_params.get("variant", "")[:20]
        call = self.stub(rpc.ModelServiceStub).DownloadModel(ref, metadata=self.metadata(request))
        first = await call.read()
        if first is grpc.aio.EOF:
            raise HttpError(500, "DATA_LOSS", f"model {ref.name}: the server sent no bytes")

        async def chunks() -> AsyncIterator[bytes]:
            chunk = first
            try:
                while chunk is not grpc.aio.EOF:
                    yield chunk.data
                    chunk = await call.read()
            finally:
                call.cancel()

        headers = {"Content-Disposition": f'attachment; filename="{ref.name}-v{ref.version or "active"}.onnx"',
                   "Content-Length": str(first.total_bytes)}
        return StreamingResponse(chunks(), media_type="application/octet-stream", headers=headers)

    async def detect(self, request: Request) -> Response:
        image = await _read_limited(request, self.max_image_bytes, "image")
        if not image:
            raise HttpError(400, "INVALID_ARGUMENT", "image: the request body is empty")
        threshold = request.query_params.get("score_threshold")
        message = pb.DetectRequest(image=image, model_name=request.query_params.get("model", ""))
        if threshold is not None:
            try:
                message.score_threshold = float(threshold)
            except ValueError:
                raise HttpError(400, "INVALID_ARGUMENT", f"score_threshold: {threshold[:20]!r} is not a number") \
                    from None
        reply = await self.stub(rpc.DetectionServiceStub).Detect(message, metadata=self.metadata(request))
        return JSONResponse(to_json(reply))

    async def index(self, request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers=SECURITY_HEADERS)

    def routes(self) -> list:
        api = [
            ("/api/info", self.info, ["GET"]),
            ("/api/schema", self.schema, ["GET"]),
            ("/api/datasets", self.list_datasets, ["GET"]),
            ("/api/datasets", self.upload_dataset, ["POST"]),
            ("/api/datasets/{name}/{version}", self.delete_dataset, ["DELETE"]),
            ("/api/datasets/{name}/{version}/images", self.dataset_images, ["GET"]),
            ("/api/datasets/{name}/{version}/images/{image_id}", self.thumbnail, ["GET"]),
            ("/api/jobs", self.list_jobs, ["GET"]),
            ("/api/jobs", self.start_job, ["POST"]),
            ("/api/jobs/{id}", self.get_job, ["GET"]),
            ("/api/jobs/{id}/cancel", self.cancel_job, ["POST"]),
            ("/api/jobs/{id}/events", self.job_events, ["GET"]),
            ("/api/models", self.list_models, ["GET"]),
            ("/api/models/{name}/rollback", self.rollback_model, ["POST"]),
            ("/api/models/{name}/{version}", self.delete_model, ["DELETE"]),
            ("/api/models/{name}/{version}/activate", self.activate_model, ["POST"]),
            ("/api/models/{name}/{version}/classes", self.set_class_info, ["PUT"]),
            ("/api/models/{name}/{version}/onnx", self.download_model, ["GET"]),
            ("/api/detect", self.detect, ["POST"]),
            *LabelStudioBackend(self, self.label_studio_url).routes(),
        ]
        return [Route(path, self.endpoint(handler), methods=methods) for path, handler, methods in api] + [
            Route("/", self.index, methods=["GET"]),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ]


async def _read_limited(request: Request, limit: int, field: str) -> bytes:
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise HttpError(413, "RESOURCE_EXHAUSTED", f"{field}: {length} bytes; at most {limit}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HttpError(413, "RESOURCE_EXHAUSTED", f"{field}: more than {limit} bytes")
    return bytes(body)


def console_app(grpc_target: str, scratch_root: Path, max_upload_bytes: int, max_image_bytes: int,
                label_studio_url: str = "") -> Starlette:
    console = Console(grpc_target, scratch_root, max_upload_bytes, max_image_bytes, label_studio_url)
    return Starlette(routes=console.routes(), lifespan=console.lifespan)
