"""The job runner with stand-in workers: FIFO order, the concurrency limit, cancelling queued and running
jobs, success and failure, and a restart that queues interrupted jobs first. No torch, no training.

The runner starts workers as `<python> -m server.job_worker RUN_DIR` (README: "How it runs"); here
`<python>` is a small script that stands in for the worker: it marks itself started, waits until the test
releases it, writes the result.json the test chose and exits with the test's exit code.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from artdet.detector.errors import FailedPrecondition, NotFound
from artdet.server.jobs import JobRunner
from artdet.server.store import Store
from tests.conftest import wait_for

STATS = {"images": 1, "boxes": 1, "negative_images": 0, "boxes_per_class": {"a": 1}, "min_width": 1,
         "max_width": 1, "min_height": 1, "max_height": 1}

FAKE_WORKER = """#!{python}
import json, os, sys, time
run_dir = sys.argv[-1]
control = os.environ["FAKE_WORKER_CONTROL"]
job = os.path.basename(run_dir)
alive = os.path.join(control, "alive")
os.makedirs(alive, exist_ok=True)
open(os.path.join(alive, job), "w").close()
with open(os.path.join(control, "log"), "a") as log:  # start order and how many ran at once
    log.write(json.dumps({{"job": job, "pid": os.getpid(), "alive": len(os.listdir(alive))}}) + "\\n")
release = os.path.join(control, "release-" + job)
give_up = time.monotonic() + 600  # never outlive a test run that forgot it
while not os.path.exists(release):
    if time.monotonic() > give_up:
        sys.exit(99)
    time.sleep(0.01)
outcome = json.load(open(release))
if outcome.get("result") is not None:
    json.dump(outcome["result"], open(os.path.join(run_dir, "result.json"), "w"))
os.remove(os.path.join(alive, job))
sys.exit(outcome["code"])
"""


class Workers:
    """The stand-in workers' side of the test: who started, in which order, and releasing them."""

    def __init__(self, control: Path):
        self.control = control

    def started(self) -> list[dict]:
        log = self.control / "log"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []

    def started_ids(self) -> list[str]:
        return [entry["job"] for entry in self.started()]

    def release(self, job_id: str, code: int = 0, result: dict | None = None) -> None:
        path = self.control / f"release-{job_id}"
        path.with_suffix(".tmp").write_text(json.dumps({"code": code, "result": result}))
        path.with_suffix(".tmp").rename(path)


EXPORTED = {"summary": {}, "export": {"parity": {"failures": [], "matched": 1}, "metadata": {}}}


@pytest.fixture
def env(tmp_path, monkeypatch):
    control = tmp_path / "control"
    control.mkdir()
    fake = tmp_path / "fake-python"
    fake.write_text(FAKE_WORKER.format(python=sys.executable))
    fake.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(fake))  # what the runner starts workers with
    monkeypatch.setenv("FAKE_WORKER_CONTROL", str(control))
    store = Store(tmp_path / "data", min_free_mb=0)
    staged = store.staging_dir("upload-")
    (staged / "images").mkdir()
    (staged / "annotations.json").write_text("{}")
    dataset = store.add_dataset("shapes", "a" * 64, STATS, staged)[0]
    registered: list[str] = []
    runners: list[JobRunner] = []

    def runner(concurrency: int = 1) -> JobRunner:
        def register(job, result):
            registered.append(job.id)
            return 40 + len(registered)

        made = JobRunner(store, concurrency=concurrency, register=register, poll_seconds=0.05)
        runners.append(made)
        return made

    yield store, dataset, Workers(control), runner, registered
    for made in runners:
        try:
            made.stop()  # kills the workers of jobs still running
        except RuntimeError:  # never started
            pass


def _state(store: Store, job_id: str) -> str:
    return store.get_job(job_id).state


def _event_types(store: Store, job_id: str) -> list[str]:
    path = store.get_job(job_id).run_dir / "events.jsonl"
    return [json.loads(line)["type"] for line in path.read_text().splitlines()]


def wait_finished(store: Store, job_id: str, what: str) -> str:
    """The job's final state, once its last event ("finished") is written."""
    wait_for(lambda: _event_types(store, job_id)[-1] == "finished", what=what)
    return _state(store, job_id)


def test_jobs_run_one_at_a_time_in_submission_order(env):
    store, dataset, workers, make_runner, registered = env
    runner = make_runner(concurrency=1)
    jobs = [runner.submit(dataset, "m", {"n": n}) for n in range(3)]
    assert [_state(store, j.id) for j in jobs] == ["queued"] * 3
    assert [j.id for j in store.list_jobs()] == [j.id for j in jobs]
    runner.start()
    for index, job in enumerate(jobs):
        wait_for(lambda: len(workers.started()) == index + 1, what=f"worker {index} to start")
        assert _state(store, job.id) == "running"
        assert [_state(store, j.id) for j in jobs[index + 1:]] == ["queued"] * (2 - index)
        workers.release(job.id, 0, EXPORTED)
        assert wait_finished(store, job.id, f"job {index} to succeed") == "succeeded"
    assert workers.started_ids() == [j.id for j in jobs]
    assert max(entry["alive"] for entry in workers.started()) == 1
    assert registered == [j.id for j in jobs]
    done = store.get_job(jobs[0].id)
    assert done.model_version == 41 and done.finished_at >= done.started_at > 0
    assert _event_types(store, jobs[0].id) == ["queued", "started", "registered", "finished"]


def test_the_concurrency_limit_holds_and_a_freed_slot_takes_the_next_job(env):
    store, dataset, workers, make_runner, _ = env
    runner = make_runner(concurrency=2)
    jobs = [runner.submit(dataset, "m", {"n": n}) for n in range(4)]
    runner.start()
    wait_for(lambda: len(workers.started()) == 2, what="two workers")
    assert set(workers.started_ids()) == {jobs[0].id, jobs[1].id}  # the first two, started together
    assert [_state(store, j.id) for j in jobs] == ["running", "running", "queued", "queued"]
    workers.release(jobs[1].id, 0, EXPORTED)
    wait_for(lambda: len(workers.started()) == 3, what="the third worker")
    assert workers.started_ids()[2] == jobs[2].id and _state(store, jobs[3].id) == "queued"
    for job in jobs[:1] + jobs[2:3]:
        workers.release(job.id, 0, EXPORTED)
    wait_for(lambda: len(workers.started()) == 4, what="the fourth worker")
    workers.release(jobs[3].id, 0, EXPORTED)
    assert [wait_finished(store, j.id, "every job") for j in jobs] == ["succeeded"] * 4
    assert max(entry["alive"] for entry in workers.started()) == 2


def test_a_cancelled_queued_job_never_runs(env):
    store, dataset, workers, make_runner, registered = env
    runner = make_runner(concurrency=1)
    first, second = runner.submit(dataset, "m", {}), runner.submit(dataset, "m", {})
    runner.start()
    wait_for(lambda: workers.started_ids() == [first.id], what="the first worker")
    cancelled = runner.cancel(second.id)
    assert cancelled.state == "cancelled" and cancelled.finished_at > 0
    assert _event_types(store, second.id) == ["queued", "cancelled", "finished"]
    third = runner.submit(dataset, "m", {})
    workers.release(first.id, 0, EXPORTED)
    wait_for(lambda: len(workers.started()) == 2, what="the next worker")
    assert workers.started_ids() == [first.id, third.id]  # the cancelled job was skipped
    workers.release(third.id, 0, EXPORTED)
    assert wait_finished(store, third.id, "the third job") == "succeeded"
    assert _state(store, second.id) == "cancelled" and second.id not in registered
    with pytest.raises(FailedPrecondition, match="already ended"):
        runner.cancel(second.id)


def test_cancelling_a_running_job_kills_its_worker_and_frees_the_slot(env):
    store, dataset, workers, make_runner, registered = env
    runner = make_runner(concurrency=1)
    first, second = runner.submit(dataset, "m", {}), runner.submit(dataset, "m", {})
    runner.start()
    wait_for(lambda: workers.started_ids() == [first.id], what="the first worker")
    pid = workers.started()[0]["pid"]
    assert runner.cancel(first.id).state == "cancelled"
    with pytest.raises(ProcessLookupError):  # killed and reaped, not left running or a zombie
        os.kill(pid, 0)
    assert _event_types(store, first.id)[-2:] == ["cancelled", "finished"]
    wait_for(lambda: workers.started_ids() == [first.id, second.id], what="the queued job to start")
    workers.release(second.id, 0, EXPORTED)
    assert wait_finished(store, second.id, "the second job") == "succeeded"
    assert registered == [second.id] and _state(store, first.id) == "cancelled"


def test_a_failed_worker_fails_its_job_with_the_workers_error(env):
    store, dataset, workers, make_runner, registered = env
    runner = make_runner()
    errored, crashed = runner.submit(dataset, "m", {}), runner.submit(dataset, "m", {})
    runner.start()
    wait_for(lambda: workers.started_ids() == [errored.id], what="the first worker")
    workers.release(errored.id, 1, {"error": "annotations: category 7 is unknown"})
    assert wait_finished(store, errored.id, "the first job to fail") == "failed"
    assert store.get_job(errored.id).error == "annotations: category 7 is unknown"
    assert _event_types(store, errored.id)[-2:] == ["failed", "finished"]
    wait_for(lambda: len(workers.started()) == 2, what="the second worker")
    workers.release(crashed.id, 0, {"error": "the export failed its parity check"})  # exit 0 but an error
    assert wait_finished(store, crashed.id, "the second job to fail") == "failed"
    assert store.get_job(crashed.id).error == "the export failed its parity check"
    assert registered == []
    assert runner.counts() == {"queued": 0, "running": 0, "succeeded": 0, "failed": 2, "cancelled": 0}


def test_a_restart_queues_interrupted_jobs_first_and_starts_them_again(env):
    store, dataset, workers, make_runner, _ = env
    before = make_runner(concurrency=1)
    interrupted, waiting = before.submit(dataset, "m", {}), before.submit(dataset, "m", {})
    before.start()
    wait_for(lambda: workers.started_ids() == [interrupted.id], what="the first worker")
    first_pid = workers.started()[0]["pid"]
    before.stop()  # the server going down: its worker is killed, the job stays "running"
    assert _state(store, interrupted.id) == "running" and _state(store, waiting.id) == "queued"
    wait_for(lambda: _gone_or_zombie(first_pid), what="the old worker to die")
    after = make_runner(concurrency=1)
    after.start()
    wait_for(lambda: len(workers.started()) == 2, what="a worker after the restart")
    assert workers.started_ids()[1] == interrupted.id  # ahead of the job that was waiting
    job = store.get_job(interrupted.id)
    assert (job.state, job.restarts) == ("running", 1) and _state(store, waiting.id) == "queued"
    assert _event_types(store, interrupted.id) == ["queued", "started", "restarted", "started"]
    workers.release(interrupted.id, 0, EXPORTED)
    wait_for(lambda: len(workers.started()) == 3, what="the waiting job")
    workers.release(waiting.id, 0, EXPORTED)
    assert wait_finished(store, waiting.id, "the waiting job to succeed") == "succeeded"


def _gone_or_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except FileNotFoundError:
        return True


def test_a_succeeded_job_keeps_one_copy_of_its_model_and_delete_frees_its_run_folder(tmp_path, monkeypatch, env):
    """Issue 11 item 9: a 3-epoch job used to leave last.pt, best.pt and the ONNX twice (run folder + registry)."""
    store, dataset, workers, _, _ = env
    onnx = b"onnx-bytes" * 1000

    def register(job, result):
        return store.add_model(job.model_name, job.id, job.run_dir / "model.onnx", {"arch": "a"}).version

    runner = JobRunner(store, register=register, poll_seconds=0.05)
    try:
        first, second = runner.submit(dataset, "m", {}), runner.submit(dataset, "m", {})
        runner.start()
        wait_for(lambda: workers.started_ids() == [first.id], what="the worker")
        (first.run_dir / "checkpoints").mkdir()
        for name, data in (("checkpoints/last.pt", b"l" * 5000), ("checkpoints/best.pt", b"b" * 3000),
                           ("model.onnx", onnx)):
            (first.run_dir / name).write_bytes(data)
        workers.release(first.id, 0, EXPORTED)
        assert wait_finished(store, first.id, "the job") == "succeeded"
        model = store.get_model("m", store.get_job(first.id).model_version)
        assert model.onnx_path.read_bytes() == onnx
        assert not (first.run_dir / "model.onnx").exists() and not (first.run_dir / "checkpoints/last.pt").exists()
        assert (first.run_dir / "checkpoints/best.pt").is_file()  # retraining from the model needs it

        wait_for(lambda: workers.started_ids() == [first.id, second.id], what="the second worker")
        with pytest.raises(FailedPrecondition, match=f"job {second.id} is running; cancel it first"):
            runner.delete(second.id)
        retrain = runner.submit(dataset, "m", {"weights": str(first.run_dir / "checkpoints" / "best.pt")})
        with pytest.raises(FailedPrecondition, match=f"job {retrain.id} retrains from its checkpoint"):
            runner.delete(first.id)  # the queued job would find its starting weights gone
        runner.cancel(retrain.id)
        size = sum(p.stat().st_size for p in first.run_dir.rglob("*") if p.is_file())
        assert runner.delete(first.id) == size >= 3000
        assert not first.run_dir.exists() and [j.id for j in store.list_jobs()] == [second.id, retrain.id]
        assert store.get_model("m", model.version).onnx_path.read_bytes() == onnx  # the model stays
        with pytest.raises(NotFound, match=f"job {first.id!r} not found"):
            runner.delete(first.id)
        assert [j.id for j in Store(store.root, min_free_mb=0).list_jobs()] == [second.id, retrain.id]
        # a crash after the folder left but before its row did: the next start drops the row
        retrain.run_dir.rename(store.root / "tmp" / "deleted-by-a-crash")
        reopened = Store(store.root, min_free_mb=0)
        assert [j.id for j in reopened.list_jobs()] == [second.id]
        assert reopened.report["dropped"] == [f"runs/{retrain.id}"]
        workers.release(second.id, 0, EXPORTED)
        wait_finished(store, second.id, "the second job")
    finally:
        runner.stop()
