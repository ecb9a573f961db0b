"""Detection under hostile and careless clients, against real server processes on loopback: memory stays
bounded, malformed messages and names get INVALID_ARGUMENT, limits hold, streams cannot starve Detect,
old model versions are unloaded, and SIGTERM ends the server whatever streams are open."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import grpc
import numpy as np
import psutil
import pytest
from PIL import Image

from artdet.tools.bench.fuzz import png_of_zeros
from artdet.v1 import artdet_pb2 as pb
from tests.conftest import ROOT, ServerProcess

MODEL = "shapes"


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def _painting() -> bytes:
    rng = np.random.default_rng(0)
    return _png(Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)))


def _write_models_dir(root: Path, onnx: Path, versions: int = 1, active: int = 1) -> Path:
    """A models directory as the registry lays it out, versions hard-linked to one exported file."""
    for version in range(1, versions + 1):
        folder = root / MODEL / str(version)
        folder.mkdir(parents=True)
        os.link(onnx, folder / "model.onnx")
        (folder / "model.json").write_text(json.dumps({"class_info": {}}))
    (root / MODEL / "active.json").write_text(json.dumps({"version": active, "history": [active]}))
    return root


@pytest.fixture(scope="module")
def replica(overfit_export, tmp_path_factory):
    """A Detect-only replica with few threads, so stream limits are reached quickly."""
    root = tmp_path_factory.mktemp("replica")
    models = _write_models_dir(root / "models", overfit_export["path"])
    server = ServerProcess(root / "unused", "--model-dir", models, "--rpc-threads", "4",
                           "--max-image-pixels", "40000000", "--ort-intra-threads", "1").start()
    yield server
    server.stop()


def _code(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details()


def test_large_pngs_do_not_grow_server_memory(replica):
    """A 36 MP PNG (under the 40 MP limit) used to add about 1 GB of RSS per Detect, never returned."""
    detection = replica.connect("client").detection()
    metadata = replica.connect("client").metadata
    image = png_of_zeros(6000, 6000, colour=2)
    process = psutil.Process(replica.process.pid)
    detection.Detect(pb.DetectRequest(image=image), metadata=metadata, timeout=120)
    after_first = process.memory_info().rss
    errors = []

    def client():
        try:
            for _ in range(2):
                detection.Detect(pb.DetectRequest(image=image), metadata=metadata, timeout=300)
        except grpc.RpcError as exc:
            errors.append(exc.code())

    threads = [threading.Thread(target=client) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert not errors
    grown_mb = (process.memory_info().rss - after_first) / 2**20
    assert grown_mb < 100, f"RSS grew {grown_mb:.0f} MB over 8 more Detects of a 36 MP PNG"
    assert process.memory_info().rss < 700 * 2**20


def test_malformed_protobuf_bytes_get_invalid_argument(replica):
    channel = grpc.insecure_channel(replica.address)
    metadata = replica.connect("client").metadata
    unary = channel.unary_unary("/artdet.v1.DetectionService/Detect", request_serializer=lambda b: b,
                                response_deserializer=lambda b: b)
    code, details = _code(lambda: unary(b"\xff\xff", metadata=metadata, timeout=30))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "not a valid protobuf" in details
    stream = channel.stream_stream("/artdet.v1.DetectionService/DetectStream", request_serializer=lambda b: b,
                                   response_deserializer=lambda b: b)
    code, details = _code(lambda: list(stream(iter([b"\xff\xff"]), metadata=metadata, timeout=30)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "request message 0" in details


@pytest.mark.parametrize("name", ["..", "/etc", "../models", "a" * 10_000, "x/y", ""])
def test_model_names_never_reach_the_file_system(replica, name):
    detection = replica.connect("client")
    request = pb.DetectRequest(image=_painting(), model_name=name or " ")
    code, details = _code(lambda: detection.detection().Detect(request, metadata=detection.metadata, timeout=30))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("model_name: ")
    assert len(details) < 300 and "/" not in details.replace(repr(name[:40]), "")


def test_unknown_model_names_and_versions_are_not_found(replica):
    detection = replica.connect("client")
    for request in (pb.DetectRequest(image=_painting(), model_name="nosuch"),
                    pb.DetectRequest(image=_painting(), model_name=MODEL, model_version=99)):
        code, details = _code(lambda: detection.detection().Detect(request, metadata=detection.metadata, timeout=30))
        assert code == grpc.StatusCode.NOT_FOUND and str(replica.data_dir.parent) not in details


def test_request_sizes_have_limits(replica):
    connection = replica.connect("client")
    cases = [pb.DetectRequest(image=_painting(), classes=[f"class{i}" for i in range(5000)]),
             pb.DetectRequest(image=_painting(), classes=["x" * 100_000]),
             pb.DetectRequest(image=_painting(), classes=["unicorn"]),
             pb.DetectRequest(image=_painting(), max_detections=2**31 - 1),
             pb.DetectRequest(image=_painting(), model_version=-1),
             pb.DetectRequest(image=_painting(), score_threshold=float("nan")),
             pb.DetectRequest(image=_png(Image.new("RGB", (30_000, 1)))),  # the network would see 0 rows
             pb.DetectRequest(image=_png(Image.new("RGB", (1, 30_000))))]
    for request in cases:
        code, details = _code(lambda: connection.detection().Detect(request, metadata=connection.metadata,
                                                                     timeout=30))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and len(details) < 1000, (code, details[:200])


def test_a_bad_frame_is_answered_and_the_stream_goes_on(replica):
    connection = replica.connect("client")
    frames = [pb.DetectRequest(image=_painting()), pb.DetectRequest(image=b"not an image"),
              pb.DetectRequest(image=_png(Image.new("RGB", (64, 48))), score_threshold=2.0),
              pb.DetectRequest(image=_painting())]
    responses = list(connection.detection().DetectStream(iter(frames), metadata=connection.metadata, timeout=60))
    assert len(responses) == 4
    assert [r.error.code for r in responses] == ["", "INVALID_ARGUMENT", "INVALID_ARGUMENT", ""]
    assert "frame 1" in responses[1].error.message and "score_threshold" in responses[2].error.message
    assert responses[0].width == responses[3].width == 128 and responses[3].model_version == 1


def test_idle_streams_leave_threads_for_detect(replica):
    """Four threads: idle streams take at most half of them; more are refused, and Detect still answers."""
    connection = replica.connect("client")
    release = threading.Event()
    outcomes: list[str] = []

    def idle_frames():
        release.wait(120)
        return
        yield  # a generator that sends nothing until released

    def open_stream():
        try:
            list(connection.detection().DetectStream(idle_frames(), metadata=connection.metadata, timeout=120))
            outcomes.append("ended")
        except grpc.RpcError as exc:
            outcomes.append(exc.code().name)

    streams = [threading.Thread(target=open_stream) for _ in range(4)]
    for thread in streams:
        thread.start()
    try:
        response = connection.detection().Detect(pb.DetectRequest(image=_painting()), metadata=connection.metadata,
                                                 timeout=60)
        assert response.model_version == 1
    finally:
        release.set()
        for thread in streams:
            thread.join(timeout=60)
    assert sorted(outcomes) == ["RESOURCE_EXHAUSTED", "RESOURCE_EXHAUSTED", "ended", "ended"]


def test_the_repository_keeps_active_previous_and_a_few_recent_versions(overfit_export, tmp_path):
    from artdet.server.model_repository import ModelRepository

    models = _write_models_dir(tmp_path / "models", overfit_export["path"], versions=6)
    repository = ModelRepository(models, intra_op_threads=1, extra_versions=2)
    for version in range(2, 7):
        repository.activate(MODEL, version)
    # active 6 and previous 5 are pinned; of the others only the two most recently used stay loaded
    assert set(repository.loaded_versions()) == {(MODEL, 6), (MODEL, 5), (MODEL, 4), (MODEL, 3)}
    for version in (1, 2, 3, 4):
        assert repository.resolve(MODEL, version).version == version
    assert set(repository.loaded_versions()) == {(MODEL, 6), (MODEL, 5), (MODEL, 3), (MODEL, 4)}
    assert repository.rollback(MODEL) == 5
    assert repository.resolve(MODEL).version == 5
    assert (MODEL, 5) in repository.loaded_versions() and len(repository.loaded_versions()) <= 4


@pytest.fixture(scope="module")
def full_server(overfit_export, tmp_path_factory):
    """The full service holding two registered versions, v1 active (registered through the store, no training)."""
    from artdet.server.store import Store

    root = tmp_path_factory.mktemp("full")
    store = Store(root / "data", min_free_mb=0)
    card = {"arch": "fasterrcnn_mobilenet_v3_large_320_fpn", "class_names": ["circle", "square"], "metrics": {}}
    for job in ("job0", "job1"):
        store.add_model(MODEL, job, overfit_export["path"], card)
    del store
    server = ServerProcess(root / "data", "--min-free-mb", "0", "--rpc-threads", "8").start()
    admin = server.connect("admin")
    admin.models().ActivateModel(pb.ModelRef(name=MODEL, version=1), metadata=admin.metadata, timeout=60)
    yield server
    server.stop()


def test_class_descriptions_have_a_size_limit(full_server):
    admin = full_server.connect("admin")
    huge = pb.SetClassInfoRequest(model=pb.ModelRef(name=MODEL, version=1),
                                  class_info=[pb.ClassInfo(name="circle", description="x" * 5_000_000)])
    code, details = _code(lambda: admin.models().SetClassInfo(huge, metadata=admin.metadata, timeout=60))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "description" in details
    fine = pb.SetClassInfoRequest(model=pb.ModelRef(name=MODEL, version=1),
                                  class_info=[pb.ClassInfo(name="circle", description="A round shape.")])
    admin.models().SetClassInfo(fine, metadata=admin.metadata, timeout=60)
    response = admin.detection().Detect(pb.DetectRequest(image=_painting(), score_threshold=0.0),
                                        metadata=admin.metadata, timeout=60)
    assert response.model_version == 1


def test_a_damaged_model_card_is_the_servers_fault_not_the_clients(full_server):
    admin = full_server.connect("admin")
    card = full_server.data_dir / "models" / MODEL / "1" / "model.json"
    saved = card.read_bytes()
    card.write_text("{ damaged")
    try:
        code, details = _code(lambda: admin.models().GetModel(pb.ModelRef(name=MODEL, version=1),
                                                              metadata=admin.metadata, timeout=30))
    finally:
        card.write_bytes(saved)
    assert code == grpc.StatusCode.DATA_LOSS and "model.json" in details, (code, details)
    assert str(full_server.data_dir) not in details


def test_the_phone_app_can_download_its_active_model_and_nothing_else(full_server, tmp_path):
    client = full_server.connect("client")
    models, metadata = client.models(), client.metadata
    listed = models.ListModels(pb.ListModelsRequest(), metadata=metadata, timeout=30).models
    assert [(m.name, m.version, m.active) for m in listed] == [(MODEL, 1, True)]
    assert models.GetModel(pb.ModelRef(name=MODEL), metadata=metadata, timeout=30).version == 1
    chunks = list(models.DownloadModel(pb.ModelRef(name=MODEL, version=1), metadata=metadata, timeout=60))
    assert sum(len(c.data) for c in chunks) == chunks[0].total_bytes and chunks[-1].sha256
    for call in (lambda: models.GetModel(pb.ModelRef(name=MODEL, version=2), metadata=metadata, timeout=30),
                 lambda: list(models.DownloadModel(pb.ModelRef(name=MODEL, version=2), metadata=metadata,
                                                   timeout=30)),
                 lambda: models.ActivateModel(pb.ModelRef(name=MODEL, version=2), metadata=metadata, timeout=30),
                 lambda: models.DeleteModel(pb.ModelRef(name=MODEL, version=2), metadata=metadata, timeout=30)):
        code, _ = _code(call)
        assert code == grpc.StatusCode.PERMISSION_DENIED
    operator = full_server.connect("operator")
    listed = operator.models().ListModels(pb.ListModelsRequest(), metadata=operator.metadata, timeout=30).models
    assert [m.version for m in listed] == [1, 2]


def test_internal_errors_carry_a_request_id_and_no_server_path(caplog):
    import logging

    from artdet.detector.errors import redact_paths
    from artdet.server.errors import rpc_errors

    class Servicer:
        @rpc_errors
        def Call(self, request, context):
            raise RuntimeError("boom in /srv/artdet/data/models/x/1/model.onnx")

    class Context:
        def is_active(self):
            return True

        def abort(self, code, message):
            self.status = (code, message)
            raise Exception()

    context = Context()
    with caplog.at_level(logging.ERROR, logger="artdet.server"), pytest.raises(Exception):
        Servicer().Call(None, context)
    code, message = context.status
    assert code == grpc.StatusCode.INTERNAL and "request id" in message and "/srv" not in message
    request_id = message.split("request id ")[1].split(";")[0]
    assert request_id in caplog.text and "boom" in caplog.text
    assert redact_paths("cannot open /srv/artdet/data/tmp/upload-1/images/a.jpg: gone") == \
        "cannot open a.jpg: gone"


def test_sigterm_ends_the_server_within_the_grace_period_whatever_streams_are_open(overfit_export, tmp_path):
    """A garbage DetectStream, an idle one, and a watcher of a running job stay open; SIGTERM still ends it."""
    from artdet.server.store import Store
    from tests.conftest import write_shapes_for_server
    from artdet.tools.client import push_dataset

    store = Store(tmp_path / "data", min_free_mb=0)
    store.add_model(MODEL, "job0", overfit_export["path"], {"arch": "x", "class_names": ["circle", "square"]})
    del store
    (tmp_path / "data" / "models" / MODEL / "active.json").write_text(json.dumps({"version": 1, "history": [1]}))
    server = ServerProcess(tmp_path / "data", "--min-free-mb", "0", "--shutdown-grace-s", "2").start()
    admin = server.connect("admin")
    push_dataset(admin, "shapes", write_shapes_for_server(tmp_path / "upload"), progress=False, timeout=120)
    parameters = pb.TrainingParameters(arch="fasterrcnn_mobilenet_v3_large_320_fpn", stage1_epochs=0,
                                       stage2_epochs=500, max_size=128, batch_size=2)
    job = admin.training().StartJob(pb.StartJobRequest(dataset_name="shapes", parameters=parameters, weights="none"),
                                    metadata=admin.metadata, timeout=60)
    garbage = grpc.insecure_channel(server.address).stream_stream(
        "/artdet.v1.DetectionService/DetectStream", request_serializer=lambda b: b, response_deserializer=lambda b: b)
    release = threading.Event()

    def garbage_then_silence():
        yield b"\xff\xff"
        release.wait(120)

    def idle():
        release.wait(120)
        return
        yield

    calls = [garbage(garbage_then_silence(), metadata=admin.metadata, timeout=120),
             admin.detection().DetectStream(idle(), metadata=admin.metadata, timeout=120),
             admin.training().WatchJob(pb.WatchJobRequest(id=job.id), metadata=admin.metadata, timeout=120)]
    consumers = [threading.Thread(target=lambda c=c: [*_drain(c)]) for c in calls]
    for thread in consumers:
        thread.start()
    try:
        admin.detection().Detect(pb.DetectRequest(image=_painting()), metadata=admin.metadata,
                                 timeout=60)  # the streams are open and the server serves
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(timeout=30)  # grace (2 s) + cancelling: far inside this bound
    finally:
        release.set()
        server.kill()
        for thread in consumers:
            thread.join(timeout=30)


def _drain(call):
    try:
        yield from call
    except grpc.RpcError:
        return


def test_health_answers_after_the_tests_above(replica):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    status = health_pb2_grpc.HealthStub(grpc.insecure_channel(replica.address)).Check(
        health_pb2.HealthCheckRequest(service=""), timeout=10)
    assert status.status == health_pb2.HealthCheckResponse.SERVING and replica.process.poll() is None


def test_a_second_server_on_a_busy_port_fails_at_once(replica, tmp_path):
    """gRPC Python sets SO_REUSEPORT by default: two servers would share one port and split the requests."""
    from tests.conftest import artdet

    port = replica.address.rsplit(":", 1)[1]
    result = artdet("serve", "--data-dir", tmp_path / "other", "--port", port, "--min-free-mb", "0", check=False,
                    timeout=120)
    assert result.returncode == 2 and "ready" not in result.stdout
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr and "Traceback" not in result.stderr


def test_a_serving_only_install_says_what_to_install_for_training(tmp_path):
    """Without torch, `artdet train` ends in one line naming artdet[train], not a ModuleNotFoundError traceback."""
    from tests.conftest import write_shapes_for_server

    annotations = write_shapes_for_server(tmp_path / "data", images=2)
    code = ("import sys; sys.modules['torch'] = None\n"  # as if torch were not installed
            "from tools.cli import main\n"
            f"sys.exit(main(['train', '--train', {str(annotations)!r}, '--out', {str(tmp_path / 'run')!r}]))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "install artdet[train]" in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr


def test_replica_and_unreachable_server_messages_say_what_to_do(replica):
    from tests.conftest import artdet

    connection = replica.connect("admin")
    code, details = _code(lambda: connection.models().ListModels(pb.ListModelsRequest(), metadata=connection.metadata,
                                                                 timeout=30))
    assert code == grpc.StatusCode.UNIMPLEMENTED and "Detect-only replica" in details
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    result = artdet("models", "list", "--server", f"127.0.0.1:{free}", "--token", "x", check=False, timeout=120)
    assert result.returncode == 2 and "artdet serve" in result.stderr and "Traceback" not in result.stderr
