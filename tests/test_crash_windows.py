"""A real server killed (SIGKILL, ARTDET_FAULT) at each point between two steps that must both happen, then
restarted without the fault: nothing is lost, nothing is done twice. Also: the data directory alone is the
state (a deleted artdet.db comes back from the folders), and a full disk is RESOURCE_EXHAUSTED.

One tiny training job goes through three crash windows in a row (checkpoint-saved → exported →
model-renamed), so the whole file trains twice."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import grpc
import pytest
from PIL import Image

from artdet.tools.client import push_dataset
from artdet.v1 import artdet_pb2 as pb
from tests.conftest import TINY_ARCH, ServerProcess, write_shapes_for_server

TINY = pb.TrainingParameters(arch=TINY_ARCH, stage1_epochs=1, stage2_epochs=1, max_size=128, max_iters_per_epoch=2,
                             batch_size=2, extra={"workers": "0"})


def _server(data: Path, torch_home: Path, fault: str = "", *extra: str) -> ServerProcess:
    env = {"TORCH_HOME": str(torch_home), "ARTDET_FAULT": fault}
    return ServerProcess(data, "--min-free-mb", "0", *extra, env=env).start()


def _died(server: ServerProcess, timeout: float = 300) -> None:
    """The server reached its fault point: killed by its own SIGKILL."""
    assert server.process.wait(timeout=timeout) == -9, server.log.read_text()[-3000:]


def _events(data: Path, job_id: str) -> list[dict]:
    return [json.loads(l) for l in (data / "runs" / job_id / "events.jsonl").read_text().splitlines() if l.strip()]


def _count(data: Path, job_id: str, kind: str) -> int:
    return sum(e["type"] == kind for e in _events(data, job_id))


def _state(server: ServerProcess) -> tuple:
    """What a client sees: datasets, models (with active flags) and jobs."""
    admin = server.connect("admin")
    datasets = admin.datasets().ListDatasets(pb.ListDatasetsRequest(), metadata=admin.metadata).datasets
    models = admin.models().ListModels(pb.ListModelsRequest(), metadata=admin.metadata).models
    jobs = admin.training().ListJobs(pb.ListJobsRequest(), metadata=admin.metadata).jobs
    return ([(d.name, d.version, d.sha256, d.statistics.images) for d in datasets],
            [(m.name, m.version, m.sha256, m.size_bytes, m.job_id, m.active) for m in models],
            [(j.id, j.state, j.model_name, j.model_version) for j in jobs])


def _wait_job(server: ServerProcess, job_id: str, timeout: float = 300) -> pb.Job:
    admin = server.connect("admin")
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = admin.training().GetJob(pb.GetJobRequest(id=job_id), metadata=admin.metadata)
        if job.state in (pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish")


def _alive_after(pid: int, seconds: float) -> bool:
    """Whether `pid` is still a running process once `seconds` have passed (False as soon as it is gone)."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            if Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
                return False
        except OSError:
            return False
        time.sleep(0.05)
    return True


def _files(root: Path) -> dict[str, int]:
    return {p.relative_to(root).as_posix(): p.stat().st_size
            for sub in ("datasets", "models") for p in sorted((root / sub).rglob("*")) if p.is_file()}


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (96, 64), (120, 80, 40)).save(buffer, "JPEG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def crashed(tmp_path_factory, torch_home):
    """Drive a server into every crash window, restarting after each; record what was seen."""
    root = tmp_path_factory.mktemp("crash")
    data, annotations = root / "data", write_shapes_for_server(root / "upload")
    seen: dict = {}

    # dataset-renamed: the folder is in place, its row is not
    server = _server(data, torch_home, "dataset-renamed")
    with pytest.raises(grpc.RpcError):
        push_dataset(server.connect("annotator"), "shapes", annotations, progress=False)
    _died(server, 60)
    seen["dataset_folder"] = (data / "datasets" / "shapes" / "v1" / "dataset.json").is_file()

    # checkpoint-saved: the first checkpoint of stage 2 is written; worker and server die
    server = _server(data, torch_home, "checkpoint-saved")
    seen["datasets_after_dataset_crash"] = _state(server)[0]
    seen["push_again"] = push_dataset(server.connect("annotator"), "shapes", annotations, progress=False)
    admin = server.connect("admin")
    job = admin.training().StartJob(pb.StartJobRequest(dataset_name="shapes", parameters=TINY),
                                    metadata=admin.metadata)
    _died(server)
    seen["job"] = job.id
    seen["before_crash"] = [e["type"] for e in _events(data, job.id)
                            if e["type"] in ("stage_started", "epoch_finished")
                            or e.get("checkpoint") == "last.pt"]
    worker = next(e["pid"] for e in _events(data, job.id) if e["type"] == "started")
    seen["worker_alive"] = _alive_after(worker, seconds=10)

    # exported: the resumed job exported its model; the server dies before registering it
    server = _server(data, torch_home, "exported")
    _died(server)
    seen["exported"] = ((data / "runs" / job.id / "result.json").is_file(),
                        (data / "runs" / job.id / "model.onnx").is_file(), (data / "models").exists() and
                        sorted(p.name for p in (data / "models").iterdir()))
    seen["started_before_register"] = _count(data, job.id, "started")

    # model-renamed: registration after the restart (no worker) renames the model folder, then dies
    server = _server(data, torch_home, "model-renamed")
    _died(server, 60)
    seen["model_folder"] = (data / "models" / "shapes" / "1" / "model.onnx").is_file()

    # no fault: the folder gets its row back and the job is registered exactly once
    server = _server(data, torch_home)
    seen["job_done"] = _wait_job(server, job.id)
    seen["state_registered"] = _state(server)
    server.stop()

    # activated: active.json written, then the server dies
    server = _server(data, torch_home, "activated")
    admin = server.connect("admin")
    with pytest.raises(grpc.RpcError):
        admin.models().ActivateModel(pb.ModelRef(name="shapes", version=1), metadata=admin.metadata)
    _died(server, 60)

    server = _server(data, torch_home)
    seen["state_final"] = _state(server)
    client = server.connect("client")
    seen["detect_version"] = client.detection().Detect(pb.DetectRequest(image=_jpeg(), model_name="shapes"),
                                                       metadata=client.metadata).model_version
    server.stop()
    seen["events"] = {kind: _count(data, job.id, kind)
                      for kind in ("started", "resumed", "exporting", "exported", "registered", "finished")}
    seen["quarantine"] = (data / "quarantine").exists()
    return data, seen


def test_crash_windows_lose_nothing_and_register_once(crashed):
    data, seen = crashed
    assert seen["dataset_folder"]
    assert [(d[0], d[1]) for d in seen["datasets_after_dataset_crash"]] == [("shapes", 1)]
    assert (seen["push_again"].version, seen["push_again"].reused) == (1, True)  # the upload counted once

    # died right after stage 2's first checkpoint
    assert seen["before_crash"] == ["stage_started", "epoch_finished", "checkpoint_saved", "stage_started",
                                    "epoch_finished", "checkpoint_saved"]
    assert not seen["worker_alive"]  # the worker died with its server
    assert seen["exported"] == (True, True, [])  # exported, nothing registered
    assert seen["model_folder"]
    assert seen["started_before_register"] == 2  # the first run and the resume after the checkpoint crash

    job = seen["job_done"]
    assert job.state == pb.JOB_STATE_SUCCEEDED and (job.model_name, job.model_version) == ("shapes", 1)
    datasets, models, jobs = seen["state_registered"]
    assert [(m[0], m[1], m[4], m[5]) for m in models] == [("shapes", 1, seen["job"], False)]
    assert models[0][3] == (data / "models" / "shapes" / "1" / "model.onnx").stat().st_size
    # trained on, exported once, never retrained after the export, registered once
    assert seen["events"] == {"started": 2, "resumed": 1, "exporting": 1, "exported": 1, "registered": 1,
                              "finished": 1}

    datasets_final, models_final, jobs_final = seen["state_final"]
    assert datasets_final == datasets and jobs_final == jobs
    assert [(m[0], m[1], m[5]) for m in models_final] == [("shapes", 1, True)]  # the activation survived
    assert seen["detect_version"] == 1
    assert not seen["quarantine"]


def test_the_data_directory_is_the_state(crashed, tmp_path, torch_home):
    """artdet.db deleted: every dataset and model version is listed again, nothing deleted; a model folder
    left without its row does not block the next registration."""
    source, _ = crashed
    data = tmp_path / "data"
    shutil.copytree(source, data)
    server = _server(data, torch_home)
    before, files = _state(server), _files(data)
    server.stop()
    (data / "artdet.db").unlink()
    server = _server(data, torch_home)
    try:
        after = _state(server)
        assert after[0] == before[0] and after[1] == before[1]
        assert [(j[0], j[1], j[3]) for j in after[2]] == [(j[0], j[1], j[3]) for j in before[2]]
        assert _files(data) == files
        leftover = data / "models" / "shapes" / "2"  # what a crash mid-registration could leave behind
        leftover.mkdir()
        (leftover / "model.onnx").write_bytes(b"half")
        admin = server.connect("admin")
        job = admin.training().StartJob(pb.StartJobRequest(dataset_name="shapes", parameters=TINY),
                                        metadata=admin.metadata)
        done = _wait_job(server, job.id)
        assert done.state == pb.JOB_STATE_SUCCEEDED, done.error
        assert done.model_version == 3 and (leftover / "model.onnx").read_bytes() == b"half"
    finally:
        server.stop()


def _mount_tmpfs(folder: Path, size: str) -> bool:
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return False
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                            capture_output=True)
    return result.returncode == 0


def test_a_full_disk_is_resource_exhausted(tmp_path, torch_home):
    """On a real 40 MB tmpfs: a full disk refuses uploads and jobs with the free space in the message, and a
    checkpoint that does not fit fails its job with that reason."""
    mount = tmp_path / "disk"
    if not _mount_tmpfs(mount, "40m"):
        pytest.skip("cannot mount a tmpfs here")
    try:
        data = mount / "data"
        annotations = write_shapes_for_server(tmp_path / "upload")
        server = _server(data, torch_home)
        try:
            admin = server.connect("admin")
            push_dataset(admin, "shapes", annotations, progress=False)
            # the model and its optimiser state do not fit in what is left: the checkpoint write fails
            job = admin.training().StartJob(pb.StartJobRequest(dataset_name="shapes", parameters=TINY),
                                            metadata=admin.metadata)
            done = _wait_job(server, job.id)
            assert done.state == pb.JOB_STATE_FAILED
            assert done.error.startswith("disk full while writing checkpoint"), done.error
            assert str(mount) not in done.error
        finally:
            server.stop()
        # a floor above what is free: uploads and jobs are refused at once
        server = _server(data, torch_home, "", "--min-free-mb", "1000")
        try:
            admin = server.connect("admin")
            for call in (lambda: push_dataset(admin, "other", annotations, progress=False),
                         lambda: admin.training().StartJob(pb.StartJobRequest(dataset_name="shapes", parameters=TINY),
                                                           metadata=admin.metadata, timeout=20)):
                started = time.time()
                with pytest.raises(grpc.RpcError) as caught:
                    call()
                assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert caught.value.details().startswith("data directory full (")
                assert " MB free)" in caught.value.details() and time.time() - started < 10
        finally:
            server.stop()
        # the disk really full (no floor): StartJob answers RESOURCE_EXHAUSTED at once, not after a hang
        filler = mount / "filler"
        with filler.open("wb") as handle:
            try:
                while True:
                    handle.write(b"\0" * (1 << 20))
                    handle.flush()
            except OSError:
                pass
        server = _server(data, torch_home)
        try:
            admin = server.connect("admin")
            started = time.time()
            with pytest.raises(grpc.RpcError) as caught:
                admin.training().StartJob(pb.StartJobRequest(dataset_name="shapes", parameters=TINY),
                                          metadata=admin.metadata, timeout=30)
            assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, caught.value.details()
            assert time.time() - started < 10
            with pytest.raises(grpc.RpcError) as caught:
                push_dataset(admin, "other", annotations, progress=False, timeout=30)
            assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, caught.value.details()
        finally:
            server.stop()
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)
