"""The web console's HTTP layer against a real `artdet serve`: each endpoint is its RPC, with the RPC's roles,
validation and messages; uploads take the zips annotation tools export; nothing of the server leaks."""

from __future__ import annotations

import io
import json
import urllib.error
import urllib.request
import uuid
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import TOKENS, ServerProcess, write_shapes_for_server


def call(server: ServerProcess, method: str, path: str, role: str | None = "admin", body: bytes | None = None,
         content_type: str | None = None, headers: dict | None = None) -> tuple[int, dict | bytes, dict]:
    request = urllib.request.Request(server.console_url.rstrip("/") + path, data=body, method=method)
    if role:
        request.add_header("Authorization", f"Bearer {TOKENS[role]}")
    if content_type:
        request.add_header("Content-Type", content_type)
    for key, value in (headers or {}).items():
        request.add_header(key, value)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, data, got = response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as error:
        status, data, got = error.code, error.read(), dict(error.headers)
    if got.get("content-type", "").startswith("application/json"):
        return status, json.loads(data), got
    return status, data, got


def multipart(files: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = []
    for name, data in files:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
                     f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def cvat_zip(annotations: Path, layout: str = "cvat") -> bytes:
    """The shapes dataset zipped as CVAT's COCO 1.0 (annotations/instances_default.json + images/) or as
    Label Studio / Roboflow put it (the JSON beside images/ and file names relative to the JSON)."""
    coco = json.loads(annotations.read_text())
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        for image in coco["images"]:
            data = (annotations.parent / image["file_name"]).read_bytes()
            if layout == "cvat":
                image["file_name"] = image["file_name"].split("/")[-1]
                zipped.writestr(f"images/{image['file_name']}", data)
            else:
                zipped.writestr(f"export/{image['file_name']}", data)
        zipped.writestr("annotations/instances_default.json" if layout == "cvat" else "export/result.json",
                        json.dumps(coco))
    return buffer.getvalue()


def upload_zipped(server: ServerProcess, shapes: Path, name: str) -> dict:
    body, kind = multipart([("shapes.zip", cvat_zip(shapes))])
    status, dataset, _ = call(server, "POST", f"/api/datasets?name={name}", "annotator", body, kind)
    assert status == 200, dataset
    return dataset


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    root = tmp_path_factory.mktemp("console")
    (root / "torch-home").mkdir()  # no COCO weights: a job from them fails
    server = ServerProcess(root / "data", "--min-free-mb", "0", env={"TORCH_HOME": str(root / "torch-home")}).start()
    assert server.console_url.startswith("http://127.0.0.1:")
    shapes = write_shapes_for_server(root / "shapes", images=6)
    yield server, shapes
    server.stop()


def test_a_cvat_zip_uploads_as_a_dataset_and_again_is_the_same_version(console):
    server, shapes = console
    body, kind = multipart([("shapes-cvat.zip", cvat_zip(shapes))])
    status, dataset, _ = call(server, "POST", "/api/datasets?name=zipped", "annotator", body, kind)
    assert status == 200, dataset
    assert dataset["statistics"]["images"] == 6 and dataset["version"] == 1 and not dataset["reused"]
    status, reused, _ = call(server, "POST", "/api/datasets?name=zipped", "annotator", body, kind)
    assert status == 200 and reused["version"] == 1 and reused["reused"], reused
    beside, kind = multipart([("export.zip", cvat_zip(shapes, "label-studio"))])  # the JSON beside images/
    status, other, _ = call(server, "POST", "/api/datasets?name=beside", "annotator", beside, kind)
    assert status == 200 and other["statistics"] == dataset["statistics"], other
    status, listed, _ = call(server, "GET", "/api/datasets", "operator")  # operators read datasets
    assert status == 200 and {d["name"] for d in listed["datasets"]} >= {"zipped", "beside"}
    assert isinstance(listed["datasets"][0]["statistics"]["images"], int)  # numbers as numbers


def test_upload_problems_come_back_with_their_ids_and_nothing_is_stored(console):
    server, shapes = console
    coco = json.loads(shapes.read_text())
    coco["annotations"][0]["bbox"] = [1, 1, -5, 3]
    coco["annotations"][1]["category_id"] = 999
    images = [(image["file_name"], (shapes.parent / image["file_name"]).read_bytes()) for image in coco["images"]]
    body, kind = multipart([("annotations.json", json.dumps(coco).encode()), *images])
    status, error, _ = call(server, "POST", "/api/datasets?name=broken", "annotator", body, kind)
    assert status == 400 and error["code"] == "INVALID_ARGUMENT", error
    assert f"annotation {coco['annotations'][0]['id']}:" in error["message"]
    assert f"annotation {coco['annotations'][1]['id']}:" in error["message"] and "999" in error["message"]
    assert str(server.data_dir) not in error["message"]
    status, listed, _ = call(server, "GET", "/api/datasets?name=broken")
    assert listed["datasets"] == []


@pytest.mark.parametrize("files, field", [
    ([("evil.zip", None)], "must be a relative path"),
    ([("notazip.zip", b"PK\x03\x04 garbage")], "not a zip file"),
    ([("a.json", b"{}"), ("b.json", b"{}")], "2 annotation files"),
    ([("photo.jpg", b"\xff\xd8")], "no annotation file"),
], ids=["path-traversal", "corrupt-zip", "two-annotation-files", "no-annotations"])
def test_a_hostile_or_careless_upload_is_refused_by_name(console, files, field):
    server, _ = console
    if files[0][1] is None:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as zipped:
            zipped.writestr("../../outside.json", "{}")
        files = [("evil.zip", buffer.getvalue())]
    body, kind = multipart(files)
    status, error, _ = call(server, "POST", "/api/datasets?name=hostile", "annotator", body, kind)
    assert status == 400 and field in error["message"], error
    assert not any((server.data_dir / "tmp").iterdir())  # the scratch folder went with the refusal
    assert not (server.data_dir.parent / "outside.json").exists()


def test_browsing_pages_and_thumbnails_drawn_from_the_stored_images(console):
    server, shapes = console
    upload_zipped(server, shapes, "browse")
    status, first, _ = call(server, "GET", "/api/datasets/browse/0/images?page_size=4")
    assert status == 200 and first["total"] == 6 and len(first["images"]) == 4 and first["next_page_token"]
    status, second, _ = call(server, "GET", f"/api/datasets/browse/0/images?page_size=4&page_token="
                                            f"{first['next_page_token']}")
    assert len(second["images"]) == 2 and second["next_page_token"] == ""
    coco = json.loads(shapes.read_text())
    expected = {im["id"]: sum(a["image_id"] == im["id"] for a in coco["annotations"]) for im in coco["images"]}
    assert {im["id"]: len(im["boxes"]) for im in first["images"] + second["images"]} == expected
    box = first["images"][0]["boxes"][0]
    assert set(box["box"]) == {"x1", "y1", "x2", "y2"} and box["label"] in [c["name"] for c in coco["categories"]]

    image = first["images"][0]
    status, jpeg, headers = call(server, "GET", f"/api/datasets/browse/1/images/{image['id']}?max_side=64")
    assert status == 200 and headers["content-type"] == "image/jpeg"
    thumb = Image.open(io.BytesIO(jpeg))
    assert max(thumb.size) == 64 and thumb.size[0] / thumb.size[1] == pytest.approx(
        image["width"] / image["height"], rel=0.05)
    cached = list((server.data_dir / "cache" / "thumbnails" / "browse").rglob("*.jpg"))
    assert len(cached) == 1
    assert call(server, "GET", f"/api/datasets/browse/1/images/{image['id']}?max_side=64")[1] == jpeg

    for path, code in ((f"/api/datasets/browse/1/images/{image['id']}?max_side=5000", 400),
                       ("/api/datasets/browse/1/images/999999", 404),
                       ("/api/datasets/browse/1/images?page_token=zz", 400),
                       ("/api/datasets/browse/7/images", 404)):
        status, error, _ = call(server, "GET", path)
        assert status == code and error["message"], (path, error)
    status, deleted, _ = call(server, "DELETE", "/api/datasets/browse/1", "annotator")
    assert status == 200 and deleted["deleted_versions"] == 1
    assert not (server.data_dir / "cache" / "thumbnails" / "browse" / cached[0].parent.parent.name).exists()


@pytest.mark.parametrize("role, method, path, allowed", [
    ("client", "GET", "/api/jobs", False),
    ("client", "POST", "/api/jobs", False),
    ("client", "GET", "/api/datasets", False),
    ("client", "POST", "/api/models/m/1/activate", False),
    ("client", "PUT", "/api/models/m/1/classes", False),
    ("annotator", "POST", "/api/models/m/1/activate", False),
    ("annotator", "POST", "/api/jobs", False),
    ("operator", "DELETE", "/api/datasets/zipped/1", False),
    ("operator", "POST", "/api/datasets?name=x", False),
    ("client", "GET", "/api/models", True),
    ("client", "GET", "/api/info", True),
    ("annotator", "GET", "/api/info", True),
], ids=lambda v: v if isinstance(v, str) and v.startswith("/") else None)
def test_each_endpoint_checks_the_role_its_rpc_needs(console, role, method, path, allowed):
    server, _ = console
    body, kind = (multipart([("x.json", b"{}")]) if path.startswith("/api/datasets?") else
                  (b"{}", "application/json") if method in ("POST", "PUT") else (None, None))
    status, reply, _ = call(server, method, path, role, body, kind)
    if allowed:
        assert status == 200, reply
    else:
        assert status == 403 and reply["code"] == "PERMISSION_DENIED", reply
        assert "needs role" in reply["message"]


def test_sign_in_is_a_header_token_never_a_cookie_or_a_url(console):
    server, _ = console
    status, reply, _ = call(server, "GET", "/api/info", role=None)
    assert status == 401 and reply["code"] == "UNAUTHENTICATED"
    status, reply, _ = call(server, "GET", f"/api/info?token={TOKENS['admin']}", role=None)
    assert status == 401
    status, reply, _ = call(server, "GET", "/api/info", role=None, headers={"Cookie": f"token={TOKENS['admin']}"})
    assert status == 401
    status, info, headers = call(server, "GET", "/api/info", "operator")
    assert status == 200 and info["roles"] == ["operator"] and not info["detect_only"]
    assert "set-cookie" not in {k.lower() for k in headers}
    status, page, headers = call(server, "GET", "/", role=None)
    assert status == 200 and b"artdet console" in page
    assert "default-src 'self'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"


def test_malformed_requests_get_a_status_naming_the_field(console):
    server, _ = console
    cases = [("POST", "/api/jobs", b"[1,2]", "application/json", 400, "request body"),
             ("POST", "/api/jobs", b"not json", "application/json", 400, "request body"),
             ("POST", "/api/jobs", json.dumps({"dataset_name": "zipped", "colour": 1}).encode(), "application/json",
              400, "colour"),
             ("POST", "/api/jobs", json.dumps({"dataset_name": "zipped", "parameters": {"lr": -1}}).encode(),
              "application/json", 400, "lr"),
             ("POST", "/api/detect", b"", "image/jpeg", 400, "image"),
             ("POST", "/api/detect", b"GIF89a garbage", "image/gif", 409, "no model is active"),
             ("POST", "/api/detect?score_threshold=abc", b"x", "image/jpeg", 400, "score_threshold"),
             ("POST", "/api/models/m/abc/activate", None, None, 400, "version"),
             ("GET", "/api/jobs/no-such-job", None, None, 404, "no-such-job")]
    for method, path, body, kind, code, field in cases:
        status, reply, _ = call(server, method, path, "admin", body, kind)
        assert status == code and field in reply["message"], (path, body, reply)
        assert "Traceback" not in reply["message"] and str(server.data_dir) not in reply["message"]


def test_a_job_streams_its_events_until_it_ends(console):
    server, shapes = console
    upload_zipped(server, shapes, "events")
    status, job, _ = call(server, "POST", "/api/jobs", "operator", json.dumps(
        {"dataset_name": "events", "weights": "none", "parameters": {"max_iters_per_epoch": 1}}).encode(),
        "application/json")
    assert status == 200 and job["state"] in ("JOB_STATE_QUEUED", "JOB_STATE_RUNNING"), job
    status, cancelled, _ = call(server, "POST", f"/api/jobs/{job['id']}/cancel", "operator")
    assert status == 200
    request = urllib.request.Request(f"{server.console_url}api/jobs/{job['id']}/events",
                                     headers={"Authorization": f"Bearer {TOKENS['operator']}"})
    with urllib.request.urlopen(request, timeout=120) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        text = response.read().decode()
    events = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ") and line != "data: {}"]
    assert events[0]["type"] == "queued" and events[-1]["type"] == "finished"
    assert events[-1]["state"] == "JOB_STATE_CANCELLED"
    assert text.rstrip().endswith("event: end\ndata: {}")
    status, shown, _ = call(server, "GET", f"/api/jobs/{job['id']}", "operator")
    assert shown["state"] == "JOB_STATE_CANCELLED"


def test_the_console_is_only_where_it_is_asked_for(tmp_path):
    """--no-console serves none; a Detect-only replica never does; a busy console port fails at once."""
    from tests.conftest import artdet

    off = ServerProcess(tmp_path / "off", "--no-console").start()
    try:
        assert off.console_url == ""
        busy_port = off.address.rsplit(":", 1)[1]  # a port that is taken (by gRPC)
        result = artdet("serve", "--data-dir", tmp_path / "busy", "--port", "0", "--console-port", busy_port,
                        check=False, timeout=120)
        assert result.returncode == 2 and f"cannot listen on 127.0.0.1:{busy_port}" in result.stderr
        assert "--no-console" in result.stderr and "Traceback" not in result.stderr
    finally:
        off.stop()
    (tmp_path / "models").mkdir()
    replica = ServerProcess(tmp_path / "replica", "--model-dir", tmp_path / "models").start()
    try:
        assert replica.console_url == ""
        from artdet.v1 import artdet_pb2 as pb
        from artdet.v1 import artdet_pb2_grpc as rpc

        connection = replica.connect("client")
        info = rpc.ServerServiceStub(connection.channel).GetServerInfo(pb.GetServerInfoRequest(),
                                                                       metadata=connection.metadata, timeout=30)
        connection.channel.close()
        assert info.detect_only and list(info.roles) == ["client"]
    finally:
        replica.stop()


def test_a_damaged_stored_image_is_data_loss_not_a_crash(console):
    server, shapes = console
    dataset = upload_zipped(server, shapes, "damaged")
    page = call(server, "GET", "/api/datasets/damaged/0/images?page_size=2")[1]
    stored = server.data_dir / "datasets" / "damaged" / f"v{dataset['version']}" / "images"
    (stored / page["images"][0]["file_name"]).write_bytes(b"\xff\xd8 truncated")
    (stored / page["images"][1]["file_name"]).unlink()
    for image in page["images"]:
        status, error, _ = call(server, "GET", f"/api/datasets/damaged/0/images/{image['id']}")
        assert status == 500 and error["code"] == "DATA_LOSS", error
        assert image["file_name"] in error["message"] and str(server.data_dir) not in error["message"]


def test_a_failed_job_shows_the_tail_of_its_log(console):
    """No COCO weights in this server's TORCH_HOME: the worker fails, and the job says why, without paths."""
    server, shapes = console
    upload_zipped(server, shapes, "failing")
    status, job, _ = call(server, "POST", "/api/jobs", "operator", json.dumps(
        {"dataset_name": "failing", "weights": "coco", "parameters": {"max_iters_per_epoch": 1}}).encode(),
        "application/json")
    assert status == 200, job
    from tests.conftest import wait_for

    failed = wait_for(lambda: (lambda j: j if j["state"] == "JOB_STATE_FAILED" else None)(
        call(server, "GET", f"/api/jobs/{job['id']}", "operator")[1]), timeout=300, what="the job to fail")
    assert failed["error"] and failed["log_tail"], failed
    assert str(server.data_dir) not in failed["log_tail"] and "TORCH_HOME" in failed["error"] + failed["log_tail"]


def test_an_install_without_the_console_extra_serves_without_it_and_says_what_to_install(tmp_path):
    import subprocess
    import sys

    from tests.conftest import ROOT

    code = ("import sys, logging; sys.modules['starlette'] = sys.modules['uvicorn'] = None\n"
            "logging.basicConfig(level=logging.INFO)\n"
            "from artdet.server.app import ArtdetServer, ServerConfig\n"
            f"server = ArtdetServer.full(ServerConfig(data_dir={str(tmp_path / 'data')!r}, port=0, min_free_mb=0))\n"
            "server.start(); print('console', server.console); print('torch', 'torch' in sys.modules)\n"
            "server.stop(0)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "console None" in result.stdout and "torch False" in result.stdout
    assert "web console off" in result.stderr and "pip install 'artdet[console]'" in result.stderr


def _basic(role: str) -> dict:
    import base64

    return {"Authorization": "Basic " + base64.b64encode(f"label-studio:{TOKENS[role]}".encode()).decode()}


RECTANGLES = ('<View><Image name="image" value="$image"/><RectangleLabels name="label" toName="image">'
              '<Label value="circle"/></RectangleLabels></View>')


class _Recorder:
    """A loopback HTTP server that records what it is asked: a stand-in Label Studio, or an outsider."""

    def __init__(self, redirect_to: str = ""):
        import http.server
        import threading

        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                recorder.requests.append((self.path, self.headers.get("Authorization")))
                if self.path.startswith("/redirect") and redirect_to:
                    self.send_response(302)
                    self.send_header("Location", redirect_to + "/stolen.jpg")
                    self.end_headers()
                    return
                self.send_response(404)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.requests: list[tuple[str, str | None]] = []
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


def test_the_label_studio_backend_refuses_what_it_must(console):
    """The protocol's guards without a Label Studio (tests/test_label_studio.py runs the real one)."""
    server, _ = console
    outsider = _Recorder()
    label_studio = _Recorder(redirect_to=outsider.url)

    def post(path, body, role="client"):
        return call(server, "POST", f"/label-studio/{path}", None, json.dumps(body).encode(), "application/json",
                    _basic(role) if role else None)

    try:
        status, health, _ = call(server, "GET", "/label-studio/health", None)
        assert status == 200 and health["status"] == "UP"
        setup = {"project": "7.1795611596", "schema": RECTANGLES, "hostname": label_studio.url, "access_token": "k"}
        status, reply, _ = post("setup", setup)
        assert status == 200 and reply == {"model_version": "none"}, reply  # no model active on this server yet
        status, reply, _ = post("setup", {**setup, "schema": "<View><Image name='image' value='$image'/></View>"})
        assert status == 400 and reply["message"].startswith("label_config: no <RectangleLabels"), reply
        status, reply, _ = post("setup", {**setup, "extra_params": {"score_threshold": 7}})
        assert status == 400 and reply["message"].startswith("extra_params.score_threshold"), reply
        status, reply, _ = post("setup", {**setup, "project": "9.1"}, role=None)
        assert status == 401, reply  # the artdet token is basic auth's password
        status, reply, _ = post("setup", {**setup, "project": "9.1"}, role="operator")
        assert status == 403 and "client role" in reply["message"], reply  # predictions need Detect
        status, reply, _ = post("webhook", {"action": "START_TRAINING", "project": {"id": 9}}, role=None)
        assert status == 400 and reply["message"].startswith("project 9: not set up"), reply  # nothing was kept
        # another token cannot point a project set up by someone else at another address
        status, reply, _ = post("setup", {**setup, "hostname": outsider.url}, role="admin")
        assert status == 403 and "another token" in reply["message"], reply
        # images come only from the Label Studio that set the project up, never through a redirect, and nothing
        # is fetched for a caller without a valid token
        tasks = [{"id": 1, "data": {"image": outsider.url + "/x.jpg"}}, {"id": 2, "data": {"image": "/redirect"}},
                 {"id": 3, "data": "not an object"}, {"id": 4, "data": {"image": "/data/upload/7/0a1b2c3d-a.jpg"}}]
        body = {"tasks": tasks, "project": "7.1795611596", "label_config": RECTANGLES}
        status, reply, _ = post("predict", body, role=None)
        assert status == 401 and label_studio.requests == [], reply
        status, reply, _ = post("predict", body)
        assert status == 200 and reply == {"results": [{"result": [], "score": 0.0}] * 4}, reply
        assert [path for path, _ in label_studio.requests] == ["/redirect", "/data/upload/7/0a1b2c3d-a.jpg"]
        assert all(key == "Token k" for _, key in label_studio.requests)
        assert outsider.requests == []  # neither the other host nor the redirect's target was asked
        status, reply, _ = post("predict", {**body, "project": "8.1"})
        assert status == 400 and reply["message"].startswith("project: not set up"), reply
        # webhooks come without credentials: one only acts on a project set up before, only to train, only as JSON
        status, reply, _ = post("webhook", {"action": "START_TRAINING", "project": {"id": 99}}, role=None)
        assert status == 400 and reply["message"].startswith("project 99: not set up"), reply
        status, reply, _ = post("webhook", {"action": "ANNOTATION_CREATED", "project": {"id": 7}}, role=None)
        assert status == 200 and reply["status"] == "ignored", reply
        status, reply, _ = post("webhook", {"action": "START_TRAINING", "project": {"id": "x; rm"}}, role=None)
        assert status == 400 and "not a Label Studio project id" in reply["message"], reply
        form = b'{"action": "START_TRAINING", "project": {"id": 7}}'  # what a web page could send with no-cors
        status, reply, _ = call(server, "POST", "/label-studio/webhook", None, form, "text/plain")
        assert status == 400 and "application/json" in reply["message"], reply
        status, reply, _ = post("webhook", {"action": "START_TRAINING", "project": {"id": 7}}, role=None)
        assert status == 201, reply  # it starts (and fails in the background: this Label Studio has no export)
        status, reply, _ = post("webhook", {"action": "START_TRAINING", "project": {"id": 7}}, role=None)
        assert status in (202, 429), reply  # still pushing, or at most once a minute
    finally:
        label_studio.close()
        outsider.close()


def test_a_label_studio_json_export_with_its_images_uploads(console, tmp_path):
    server, shapes = console
    coco = json.loads(shapes.read_text())
    tasks = []
    for image in coco["images"]:
        result = [{"type": "rectanglelabels", "from_name": "label", "to_name": "image",
                   "original_width": image["width"], "original_height": image["height"],
                   "value": {"x": 100 * a["bbox"][0] / image["width"], "y": 100 * a["bbox"][1] / image["height"],
                             "width": 100 * a["bbox"][2] / image["width"],
                             "height": 100 * a["bbox"][3] / image["height"], "rotation": 0,
                             "rectanglelabels": [next(c["name"] for c in coco["categories"]
                                                      if c["id"] == a["category_id"])]}}
                  for a in coco["annotations"] if a["image_id"] == image["id"]]
        name = image["file_name"].split("/")[-1]
        tasks.append({"id": image["id"], "data": {"image": f"/data/upload/3/0123abcd-{name}"},
                      "annotations": [{"id": image["id"], "result": result}]})
    files = [("project-3.json", json.dumps(tasks).encode())] + [
        (image["file_name"].split("/")[-1], (shapes.parent / image["file_name"]).read_bytes())
        for image in coco["images"]]
    body, kind = multipart(files)
    status, dataset, _ = call(server, "POST", "/api/datasets?name=from-label-studio", "annotator", body, kind)
    assert status == 200, dataset
    status, reference, _ = call(server, "POST", "/api/datasets?name=same-as-coco", "annotator",
                                *multipart([("shapes.zip", cvat_zip(shapes))]))
    assert dataset["statistics"] == reference["statistics"]
