"""The gRPC service against a real server process on a loopback port."""

from __future__ import annotations

import io
import itertools
import json
import re
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
from PIL import Image

from artdet.tools.client import push_dataset, upload_requests
from artdet.v1 import artdet_pb2 as pb
from tests.conftest import (ROOT, TINY_JOB, TOKENS, ServerProcess, artdet, wait_for,
                            write_shapes_for_server)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli_env() -> dict:
    return {"ARTDET_TOKEN": TOKENS["admin"]}


def _start_job(server: ServerProcess, dataset: str, *extra: str, watch: bool = True) -> str:
    result = artdet("jobs", "start", "--server", server.address, "--dataset", dataset, *TINY_JOB, *extra,
                    *(["--watch", "--quiet"] if watch else []), env=_cli_env())
    return result.stdout.split()[0]


def _jpeg(size=(96, 64), colour=(120, 80, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "JPEG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def shapes_server(tmp_path_factory, torch_home):
    """A server holding a synthetic dataset and two trained, registered model versions ("shapes" v1, v2)."""
    root = tmp_path_factory.mktemp("server")
    annotations = write_shapes_for_server(root / "upload")
    server = ServerProcess(root / "data", "--max-image-pixels", "300000", "--metrics-port", _free_port(),
                           env={"TORCH_HOME": str(torch_home)})
    server.metrics_port = int(server.extra[-1])
    server.start()
    push_dataset(server.connect("annotator"), "shapes", annotations, progress=False)
    server.jobs = [_start_job(server, "shapes", "--seed", str(seed)) for seed in (1, 2)]
    server.annotations = annotations
    yield server
    server.stop()


def test_health_reflection_and_metrics(shapes_server):
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    channel = grpc.insecure_channel(shapes_server.address)
    status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""))
    assert status.status == health_pb2.HealthCheckResponse.SERVING
    responses = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    services = {s.name for s in next(responses).list_services_response.service}
    assert {"artdet.v1.DatasetService", "artdet.v1.TrainingService", "artdet.v1.ModelService",
            "artdet.v1.DetectionService", "grpc.health.v1.Health"} <= services
    text = urllib.request.urlopen(f"http://127.0.0.1:{shapes_server.metrics_port}/metrics", timeout=10).read().decode()
    assert 'artdet_grpc_requests_total{code="OK",method="/artdet.v1.TrainingService/StartJob"}' in text
    assert "artdet_grpc_latency_seconds_bucket" in text and 'artdet_jobs{state="succeeded"} 2.0' in text


def test_the_grpc_process_never_loads_torch_after_starting_jobs(shapes_server):
    """Jobs were started and validated (StartJob) through this server; training ran in workers only."""
    import psutil

    mapped = {m.path for m in psutil.Process(shapes_server.process.pid).memory_maps()}
    assert any("onnxruntime" in path for path in mapped)  # the check can see the libraries it loaded
    assert not [path for path in mapped if "libtorch" in path or "/torch/lib/" in path]


def test_upload_is_idempotent_and_versions_are_immutable(shapes_server, tmp_path):
    connection = shapes_server.connect("annotator")
    again = push_dataset(connection, "shapes", shapes_server.annotations, progress=False)
    assert (again.version, again.reused) == (1, True)
    coco = json.loads(shapes_server.annotations.read_text())
    coco["annotations"] = coco["annotations"][:-1]  # a fixed annotation makes a new version
    changed = shapes_server.annotations.parent / "changed.json"
    changed.write_text(json.dumps(coco))
    new = push_dataset(connection, "shapes", changed, progress=False)
    assert (new.version, new.reused) == (2, False)
    assert new.statistics.boxes == again.statistics.boxes - 1
    listed = connection.datasets().ListDatasets(pb.ListDatasetsRequest(name="shapes"), metadata=connection.metadata)
    assert [d.version for d in listed.datasets] == [1, 2]
    stats = connection.datasets().GetDataset(pb.GetDatasetRequest(name="shapes", version=1),
                                             metadata=connection.metadata).statistics
    assert stats.images == 8 and {c.name for c in stats.boxes_per_class} == {"circle", "square"}
    assert (shapes_server.data_dir / "datasets" / "shapes" / "v1" / "annotations.json").is_file()
    deleted = connection.datasets().DeleteDataset(pb.DeleteDatasetRequest(name="shapes", version=2),
                                                  metadata=connection.metadata)
    assert deleted.deleted_versions == 1


def test_activation_during_detect_calls_never_fails(shapes_server):
    operator = shapes_server.connect("operator")
    client = shapes_server.connect("client")
    models = operator.models()
    models.ActivateModel(pb.ModelRef(name="shapes", version=1), metadata=operator.metadata)
    image = _jpeg()
    # (started after the activation returned?, version that answered, tick at the start, tick at the answer)
    calls, errors = [], []
    ticks = itertools.count()
    answered = threading.Condition()
    activated = threading.Event()
    stop = threading.Event()

    def call_detect():
        while not stop.is_set():
            after, started = activated.is_set(), next(ticks)
            try:
                reply = client.detection().Detect(pb.DetectRequest(image=image, score_threshold=0.0),
                                                  metadata=client.metadata, timeout=30)
                outcome = (after, reply.model_version, started, next(ticks))
            except grpc.RpcError as exc:
                outcome = exc
            with answered:
                (errors if isinstance(outcome, grpc.RpcError) else calls).append(outcome)
                answered.notify_all()

    def wait_for_calls(predicate, what: str) -> None:
        with answered:
            assert answered.wait_for(lambda: errors or predicate(), timeout=300), f"timed out waiting for {what}"

    threads = [threading.Thread(target=call_detect) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        wait_for_calls(lambda: len(calls) >= 20, "20 calls before the activation")
        models.ActivateModel(pb.ModelRef(name="shapes", version=2), metadata=operator.metadata)
        activated.set()
        wait_for_calls(lambda: sum(c[0] for c in calls) >= 20, "20 calls after the activation")
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert not errors, errors[:3]
    assert {version for _, version, _, _ in calls[:15]} == {1}
    assert {version for after, version, _, _ in calls if after} == {2}
    # the switch happens once: no call that started after another had been answered by v2 got v1
    first_v2 = min(end for _, version, _, end in calls if version == 2)
    assert {version for _, version, started, _ in calls if started > first_v2} == {2}
    rolled = models.RollbackModel(pb.RollbackModelRequest(name="shapes"), metadata=operator.metadata)
    assert rolled.version == 1 and rolled.active
    reply = client.detection().Detect(pb.DetectRequest(image=image), metadata=client.metadata)
    assert reply.model_version == 1


def test_detect_stream_answers_every_frame_in_order(shapes_server):
    operator, client = shapes_server.connect("operator"), shapes_server.connect("client")
    operator.models().ActivateModel(pb.ModelRef(name="shapes", version=1), metadata=operator.metadata)
    sizes = [(64, 48), (96, 64), (50, 80)]
    frames = [pb.DetectRequest(image=_jpeg(size), model_name="shapes", score_threshold=0.0) for size in sizes]
    replies = list(client.detection().DetectStream(iter(frames), metadata=client.metadata, timeout=60))
    assert [(r.width, r.height) for r in replies] == sizes
    # a bad frame is answered with its error, and the frames after it are still served
    replies = list(client.detection().DetectStream(iter([frames[0], pb.DetectRequest(image=b"junk"), frames[1]]),
                                                   metadata=client.metadata, timeout=60))
    assert [r.error.code for r in replies] == ["", "INVALID_ARGUMENT", ""] and "frame 1" in replies[1].error.message
    assert (replies[2].width, replies[2].height) == sizes[1]


def test_models_list_download_describe_and_delete(shapes_server, tmp_path):
    listed = json.loads(artdet("models", "list", "--server", shapes_server.address, "--json", env=_cli_env()).stdout)
    assert [(m["name"], m["version"]) for m in listed] == [("shapes", 1), ("shapes", 2)]
    assert all(set(m) >= {"name", "version", "active", "metrics"} for m in listed)
    assert "baseline" in listed[0]["metrics"] and "final" in listed[0]["metrics"]
    artdet("models", "download", "shapes", "2", "--out", tmp_path / "m.onnx", "--server", shapes_server.address,
           env=_cli_env())
    from artdet.detector.inference import Detector

    assert Detector(tmp_path / "m.onnx").class_names == ["circle", "square"]
    operator = shapes_server.connect("operator")
    active = [m for m in listed if m["active"]][0]["version"]
    described = json.loads(artdet("models", "describe", "shapes", str(active), "circle=A round thing",
                                  "--server", shapes_server.address, env=_cli_env()).stdout)
    assert described["name"] == "shapes"
    client = shapes_server.connect("client")
    reply = client.detection().Detect(pb.DetectRequest(image=_jpeg(), score_threshold=0.0, classes=["circle"]),
                                      metadata=client.metadata)
    assert reply.detections and all(d.description == "A round thing" for d in reply.detections)
    # `artdet detect` prints the same thing from the server as from the downloaded model, plus what only
    # the server knows (version, descriptions)
    image = next((shapes_server.annotations.parent / "images").glob("*.jpg"))
    artdet("models", "download", "shapes", "--out", tmp_path / "active.onnx", "--server", shapes_server.address,
           env=_cli_env())
    local = json.loads(artdet("detect", image, "--model", tmp_path / "active.onnx", "--json", "--threshold", "0",
                              env=_cli_env()).stdout)
    remote = json.loads(artdet("detect", image, "--server", shapes_server.address, "--model", "shapes", "--json",
                               "--threshold", "0", env=_cli_env()).stdout)
    assert set(local) == set(remote) and (local["model_version"], remote["model_version"]) == (0, active)
    assert [(d["label"], d["box"]) for d in local["detections"]] == [(d["label"], d["box"])
                                                                     for d in remote["detections"]]
    assert {d["description"] for d in remote["detections"] if d["label"] == "circle"} == {"A round thing"}
    assert described["class_info"] == {"circle": "A round thing"}

    # the rest of the API from the command line, with numbers as numbers
    server = ("--server", shapes_server.address)
    datasets = json.loads(artdet("datasets", "list", *server, "--json", env=_cli_env()).stdout)
    assert [(d["name"], d["version"]) for d in datasets] == [("shapes", 1)]
    assert isinstance(datasets[0]["statistics"]["images"], int) and datasets[0]["statistics"]["images"] == 8
    assert "shapes v1  8 images" in artdet("datasets", "show", "shapes", *server, env=_cli_env()).stdout
    job = json.loads(artdet("jobs", "show", shapes_server.jobs[0], *server, "--json", env=_cli_env()).stdout)
    registered = next(m for m in listed if m["job_id"] == shapes_server.jobs[0])
    assert (job["state"], job["model_name"], job["model_version"]) == ("succeeded", "shapes", registered["version"])
    assert job["summary"]["final"] == registered["metrics"]["final"]
    text = artdet("models", "list", *server, env=_cli_env()).stdout
    assert "* = the active version" in text and re.search(r"val mAP \d\.\d{4}$", text.splitlines()[1])
    missing = artdet("models", "delete", "shapes", "99", *server, env=_cli_env(), check=False)
    assert missing.returncode == 2 and "NOT_FOUND" in missing.stderr
    with pytest.raises(grpc.RpcError) as caught:
        operator.models().DeleteModel(pb.ModelRef(name="shapes", version=active), metadata=operator.metadata)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_bad_inputs_get_the_right_status(shapes_server, tmp_path):
    client, annotator = shapes_server.connect("client"), shapes_server.connect("annotator")

    def status(call, *args, **kwargs):
        with pytest.raises(grpc.RpcError) as caught:
            call(*args, **kwargs)
        return caught.value.code(), caught.value.details()

    detect = client.detection().Detect
    code, message = status(detect, pb.DetectRequest(image=b"\xff\xd8 not really a jpeg"), metadata=client.metadata)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "image" in message
    code, message = status(detect, pb.DetectRequest(image=_jpeg(), model_name="nope"), metadata=client.metadata)
    assert code == grpc.StatusCode.NOT_FOUND and "nope" in message
    code, message = status(detect, pb.DetectRequest(image=_jpeg((1000, 1000))), metadata=client.metadata)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "exceeds the limit" in message
    code, _ = status(detect, pb.DetectRequest(image=_jpeg()))
    assert code == grpc.StatusCode.UNAUTHENTICATED
    code, _ = status(detect, pb.DetectRequest(image=_jpeg()), metadata=(("authorization", "Bearer wrong"),))
    assert code == grpc.StatusCode.UNAUTHENTICATED
    code, message = status(annotator.training().ListJobs, pb.ListJobsRequest(), metadata=annotator.metadata)
    assert code == grpc.StatusCode.PERMISSION_DENIED and "operator" in message

    # a broken annotation file: every problem named
    broken = tmp_path / "broken.json"
    coco = json.loads(shapes_server.annotations.read_text())
    coco["annotations"][0]["bbox"] = [1, 1, -5, 3]
    coco["annotations"][1]["category_id"] = 99
    broken.write_text(json.dumps(coco))
    code, message = status(push_dataset, annotator, "broken", broken, shapes_server.annotations.parent,
                           progress=False)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "annotation 1: bbox has non-positive size" in message and "annotation 2: unknown category_id 99" in message
    not_json = tmp_path / "not.json"
    not_json.write_text("{")
    code, message = status(push_dataset, annotator, "broken", not_json, progress=False)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "not valid JSON" in message

    # path traversal in an image's file name
    header = next(upload_requests("evil", shapes_server.annotations, None, progress=False))
    evil = [header, pb.UploadDatasetRequest(chunk=pb.ImageChunk(file_name="../../escape.jpg", data=b"x",
                                                                sha256="00"))]
    code, message = status(annotator.datasets().UploadDataset, iter(evil), metadata=annotator.metadata)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "relative path inside" in message
    assert not (shapes_server.data_dir.parent / "escape.jpg").exists()

    # an upload the client abandons halfway leaves nothing visible
    def abandoned():
        for index, request in enumerate(upload_requests("abandoned", shapes_server.annotations, None, False)):
            if index == 3:
                raise RuntimeError("client crashed")
            yield request

    ended = _calls_ended(shapes_server, "UploadDataset")
    with pytest.raises(Exception):
        annotator.datasets().UploadDataset(abandoned(), metadata=annotator.metadata)
    # the server ends the abandoned call on its own side, then counts it
    wait_for(lambda: _calls_ended(shapes_server, "UploadDataset") != ended, 60, "the abandoned upload to end")
    assert _calls_ended(shapes_server, "UploadDataset") == ended + 1
    names = {d.name for d in annotator.datasets().ListDatasets(pb.ListDatasetsRequest(),
                                                                metadata=annotator.metadata).datasets}
    assert "abandoned" not in names and "evil" not in names and "broken" not in names
    assert list((shapes_server.data_dir / "tmp").iterdir()) == []

    operator = shapes_server.connect("operator")
    code, message = status(operator.training().StartJob, pb.StartJobRequest(dataset_name="missing"),
                           metadata=operator.metadata)
    assert code == grpc.StatusCode.NOT_FOUND and "missing" in message
    code, message = status(operator.training().StartJob, pb.StartJobRequest(
        dataset_name="shapes", parameters=pb.TrainingParameters(arch="yolo")), metadata=operator.metadata)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "arch" in message
    code, message = status(operator.training().StartJob, pb.StartJobRequest(
        dataset_name="shapes", weights="/etc/passwd"), metadata=operator.metadata)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "weights" in message


def test_watch_replays_past_events_and_cancel_frees_the_worker(shapes_server):
    operator = shapes_server.connect("operator")
    training = operator.training()
    long_job = pb.StartJobRequest(dataset_name="shapes", parameters=pb.TrainingParameters(
        arch="fasterrcnn_mobilenet_v3_large_320_fpn", stage1_epochs=50, stage2_epochs=50, max_size=128,
        batch_size=2, extra={"workers": "0"}))
    first = training.StartJob(long_job, metadata=operator.metadata)
    second = training.StartJob(long_job, metadata=operator.metadata)
    deadline = time.time() + 180
    replay: list = []
    while time.time() < deadline and not any(e.type == "step" for e in replay):
        replay = _replay(operator, first.id, until="step", timeout=5)
    assert training.GetJob(pb.GetJobRequest(id=second.id), metadata=operator.metadata).state == pb.JOB_STATE_QUEUED
    assert [e.type for e in replay[:2]] == ["queued", "started"]
    assert replay[-1].type == "step" and replay[-1].losses["loss"] > 0

    cancelled = training.CancelJob(pb.CancelJobRequest(id=first.id), metadata=operator.metadata)
    assert cancelled.state == pb.JOB_STATE_CANCELLED
    finished = list(training.WatchJob(pb.WatchJobRequest(id=first.id), metadata=operator.metadata, timeout=30))
    assert finished[-1].type == "finished" and finished[-1].state == pb.JOB_STATE_CANCELLED
    deadline = time.time() + 30
    while time.time() < deadline:  # the freed worker slot takes the queued job
        if training.GetJob(pb.GetJobRequest(id=second.id), metadata=operator.metadata).state == pb.JOB_STATE_RUNNING:
            break
        time.sleep(0.2)
    assert training.GetJob(pb.GetJobRequest(id=second.id), metadata=operator.metadata).state == pb.JOB_STATE_RUNNING
    with pytest.raises(grpc.RpcError) as caught:
        training.DeleteJob(pb.DeleteJobRequest(id=second.id), metadata=operator.metadata)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "cancel it first" in caught.value.details()
    admin = shapes_server.connect("admin")
    with pytest.raises(grpc.RpcError) as caught:
        admin.datasets().DeleteDataset(pb.DeleteDatasetRequest(name="shapes", version=1), metadata=admin.metadata)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION and second.id in caught.value.details()
    training.CancelJob(pb.CancelJobRequest(id=second.id), metadata=operator.metadata)
    jobs = json.loads(artdet("jobs", "list", "--server", shapes_server.address, "--json", env=_cli_env()).stdout)
    assert {j["id"]: j["state"] for j in jobs}[second.id] == "cancelled"
    deleted = artdet("jobs", "delete", first.id, "--server", shapes_server.address, env=_cli_env()).stdout
    assert deleted.startswith(f"deleted job {first.id} (freed ") and deleted.strip().endswith("MB)")
    with pytest.raises(grpc.RpcError) as caught:
        training.GetJob(pb.GetJobRequest(id=first.id), metadata=operator.metadata)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND and first.id in caught.value.details()


def _calls_ended(server: ServerProcess, method: str) -> int:
    """How many calls of `method` the server has finished, whatever their status (its Prometheus counter)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=10).read().decode()
    return int(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("artdet_grpc_requests_total{") and f"/{method}\"" in line))


def _gone_or_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except FileNotFoundError:
        return True


def _replay(connection, job_id: str, until: str, timeout: float = 20) -> list:
    """Events from a watch opened now, read until the first of type `until` (or the stream's end)."""
    events = []
    stream = connection.training().WatchJob(pb.WatchJobRequest(id=job_id), metadata=connection.metadata,
                                            timeout=timeout)
    try:
        for event in stream:
            events.append(event)
            if event.type == until:
                break
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
            raise
    stream.cancel()
    return events


def test_sigkill_during_training_resumes_after_restart(tmp_path, torch_home):
    annotations = write_shapes_for_server(tmp_path / "upload")
    server = ServerProcess(tmp_path / "data", env={"TORCH_HOME": str(torch_home)}).start()
    try:
        operator = server.connect("admin")
        push_dataset(operator, "shapes", annotations, progress=False)
        job = operator.training().StartJob(pb.StartJobRequest(dataset_name="shapes", parameters=pb.TrainingParameters(
            arch="fasterrcnn_mobilenet_v3_large_320_fpn", stage1_epochs=1, stage2_epochs=3, max_size=128,
            batch_size=2, extra={"workers": "0"})), metadata=operator.metadata)
        events_file = tmp_path / "data" / "runs" / job.id / "events.jsonl"
        # two epochs' last.pt: the kill comes in the middle of the run, with a checkpoint to resume from
        wait_for(lambda: events_file.is_file() and events_file.read_text().count('"last.pt"') >= 2, 180,
                 "a second epoch's checkpoint")
        worker_pid = next(json.loads(l)["pid"] for l in events_file.read_text().splitlines() if '"started"' in l)
        server.kill()
        saved = events_file.read_text().count('"checkpoint_saved"')
        wait_for(lambda: _gone_or_zombie(worker_pid), 60, "the worker to die with its server")
        # it died with the server, not at the end of its training: no checkpoint after the server's death
        assert events_file.read_text().count('"checkpoint_saved"') == saved
        server.start()
        operator = server.connect("admin")
        final = None
        for event in operator.training().WatchJob(pb.WatchJobRequest(id=job.id), metadata=operator.metadata,
                                                  timeout=300):
            final = event
        assert final.type == "finished"
        done = operator.training().GetJob(pb.GetJobRequest(id=job.id), metadata=operator.metadata)
        assert done.state == pb.JOB_STATE_SUCCEEDED and done.restarts == 1 and done.model_version == 1
        types = [json.loads(l)["type"] for l in events_file.read_text().splitlines()]
        assert "restarted" in types and "resumed" in types
        metrics = json.loads(done.summary_json)
        assert [e["global_epoch"] for e in metrics["epochs"]] == [1, 2, 3, 4]
        datasets = operator.datasets().ListDatasets(pb.ListDatasetsRequest(), metadata=operator.metadata).datasets
        assert [(d.name, d.version) for d in datasets] == [("shapes", 1)]
        model = operator.models().GetModel(pb.ModelRef(name="shapes", version=1), metadata=operator.metadata)
        assert model.size_bytes == (tmp_path / "data" / "models" / "shapes" / "1" / "model.onnx").stat().st_size
    finally:
        server.stop()


NODE_CLIENT = ROOT / "tests" / "node_client"


def test_a_node_client_uses_the_same_proto(shapes_server, tmp_path):
    import shutil

    missing = [name for name, present in (
        ("node", shutil.which("node")),
        ("@grpc/grpc-js", (NODE_CLIENT / "node_modules" / "@grpc" / "grpc-js").is_dir()),
        ("@grpc/proto-loader", (NODE_CLIENT / "node_modules" / "@grpc" / "proto-loader").is_dir())) if not present]
    if missing:  # never a skip: CI must run it
        pytest.fail(f"the Node client cannot run ({', '.join(missing)} missing): run `bash tools/setup.sh`, which "
                    "installs Node.js and npm where they are absent and then `npm ci --prefix tests/node_client`",
                    pytrace=False)
    operator = shapes_server.connect("operator")
    operator.models().ActivateModel(pb.ModelRef(name="shapes", version=1), metadata=operator.metadata)
    image = tmp_path / "frame.jpg"
    image.write_bytes(_jpeg((80, 60)))
    result = subprocess.run(["node", str(NODE_CLIENT / "client.js"), shapes_server.address, TOKENS["admin"],
                             str(image), "shapes"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    reply = json.loads(result.stdout)
    assert {(m["name"], m["version"]) for m in reply["models"]} >= {("shapes", 1), ("shapes", 2)}
    assert (reply["width"], reply["height"]) == (80, 60) and reply["model_version"] == 1
    assert all(d["label"] in ("circle", "square") for d in reply["detections"])
    assert reply["unauthenticated"] == "UNAUTHENTICATED"


def test_detect_only_replica_serves_a_model_directory_without_torch(shapes_server):
    models_dir = shapes_server.data_dir / "models"
    code = f"""
import sys, grpc
from artdet.server.app import ArtdetServer, ServerConfig
from artdet.v1 import artdet_pb2 as pb, artdet_pb2_grpc as rpc
server = ArtdetServer.replica(ServerConfig(model_dir={str(models_dir)!r}, port=0, refresh_seconds=0.2))
server.start()
stub = rpc.DetectionServiceStub(grpc.insecure_channel(f"127.0.0.1:{{server.port}}"))
meta = (("authorization", "Bearer {TOKENS['client']}"),)
import io
from PIL import Image
buffer = io.BytesIO(); Image.new("RGB", (64, 48)).save(buffer, "PNG")
reply = stub.Detect(pb.DetectRequest(image=buffer.getvalue(), model_name="shapes", score_threshold=0.0), metadata=meta)
assert reply.width == 64 and reply.model_name == "shapes", reply
try:
    rpc.DatasetServiceStub(grpc.insecure_channel(f"127.0.0.1:{{server.port}}")).ListDatasets(
        pb.ListDatasetsRequest(), metadata=meta)
    raise SystemExit("a replica must not serve datasets")
except grpc.RpcError as exc:
    assert exc.code() == grpc.StatusCode.UNIMPLEMENTED, exc.code()
    assert "Detect-only replica" in exc.details(), exc.details()
assert "torch" not in sys.modules, "the serving path imported torch"
server.stop()
print("ok", reply.model_version)
"""
    env = {**os.environ, "ARTDET_TOKENS": ";".join(f"{t}={r}" for r, t in TOKENS.items())}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, env=env,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("ok")
