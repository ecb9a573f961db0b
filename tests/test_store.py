"""The Store and the job runner without a server process: disk full, the folders as the state, versions,
permissions, launch order, parent death and registration after a restart. Fast; no torch."""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from artdet.detector.errors import DiskFull
from artdet.detector.files import atomic_write_bytes, save_json
from artdet.server.store import Store

ROOT = Path(__file__).resolve().parents[1]
STATS = {"images": 1, "boxes": 1, "negative_images": 0, "boxes_per_class": {"a": 1}, "min_width": 1,
         "max_width": 1, "min_height": 1, "max_height": 1}


def _staged_dataset(store: Store, payload: bytes = b"{}") -> Path:
    staged = store.staging_dir("upload-")
    (staged / "images").mkdir()
    (staged / "images" / "a.jpg").write_bytes(b"jpeg")
    (staged / "annotations.json").write_bytes(payload)
    return staged


def _add_dataset(store: Store, name: str = "shapes", sha: str = "a" * 64):
    return store.add_dataset(name, sha, STATS, _staged_dataset(store))[0]


def _onnx(tmp_path: Path, content: bytes = b"onnx-bytes") -> Path:
    path = tmp_path / f"model-{len(content)}.onnx"
    path.write_bytes(content)
    return path


def _tree(root: Path) -> dict[str, int]:
    return {p.relative_to(root).as_posix(): p.stat().st_size for p in sorted(root.rglob("*")) if p.is_file()}


def _forget_database(root: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        (root / f"artdet.db{suffix}").unlink(missing_ok=True)


# disk full -------------------------------------------------------------------------------------

def test_sqlite_disk_full_is_not_masked_by_the_rollback(tmp_path):
    store = Store(tmp_path / "data", min_free_mb=0)
    dataset = _add_dataset(store)
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    store._db.execute(f"PRAGMA max_page_count = {pages}")  # SQLite now answers SQLITE_FULL on growth
    started = time.time()
    with pytest.raises(DiskFull, match=r"data directory full \(\d+ MB free\)") as caught:
        for index in range(50):
            store.create_job(f"job{index}", dataset, "m", {"pad": "x" * 4000}, "")
    assert time.time() - started < 5
    assert "cannot rollback" not in str(caught.value) and str(tmp_path) not in str(caught.value)
    store._db.execute("PRAGMA max_page_count = 1073741823")
    assert store.create_job("after", dataset, "m", {}, "").state == "queued"  # still usable


def test_free_space_floor_refuses_uploads_and_jobs(tmp_path):
    store = Store(tmp_path / "data", min_free_mb=0)
    dataset = _add_dataset(store)
    store.min_free_mb = store.free_mb() + 10_000_000  # a floor above what the disk has
    with pytest.raises(DiskFull, match=r"^data directory full \(\d+ MB free\)"):
        store.staging_dir("upload-")
    with pytest.raises(DiskFull, match=r"^data directory full \(\d+ MB free\)"):
        store.create_job("j1", dataset, "m", {}, "")
    from artdet.server.jobs import JobRunner

    with pytest.raises(DiskFull, match="data directory full"):
        JobRunner(store).submit(dataset, "m", {})
    assert store.list_jobs() == [] and list((store.root / "runs").iterdir()) == []
    store.min_free_mb = 0
    assert store.create_job("j2", dataset, "m", {}, "").state == "queued"


def test_enospc_while_publishing_is_disk_full_and_leaves_nothing(tmp_path, monkeypatch):
    store = Store(tmp_path / "data", min_free_mb=0)
    _add_dataset(store)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "data" / "tmp" / "x"))

    monkeypatch.setattr(shutil, "copyfile", full)
    with pytest.raises(DiskFull, match=r"^data directory full \(\d+ MB free\)$") as caught:
        store.add_model("m", "job1", _onnx(tmp_path), {"arch": "x"})
    assert str(tmp_path) not in str(caught.value)
    monkeypatch.undo()
    assert store.list_models() == [] and not (store.root / "models" / "m").exists()
    assert list((store.root / "tmp").iterdir()) == []
    monkeypatch.setattr("artdet.server.store.save_json", lambda *a, **k: full())
    with pytest.raises(DiskFull, match=r"^data directory full"):
        _add_dataset(store, "other", "b" * 64)
    assert [d.name for d in store.list_datasets()] == ["shapes"]


def test_atomic_write_on_a_full_disk_names_what_it_wrote(tmp_path):
    def torch_like(handle):  # torch.save reports a failed write as a RuntimeError raised during the OSError
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

    with pytest.raises(DiskFull, match=r"^disk full while writing checkpoint last.pt \(\d+ MB free\)$"):
        atomic_write_bytes(tmp_path / "last.pt", torch_like, what="checkpoint last.pt")
    assert list(tmp_path.iterdir()) == []


def test_insert_failure_after_the_rename_takes_the_folder_back(tmp_path, monkeypatch):
    store = Store(tmp_path / "data", min_free_mb=0)
    real = store._publish

    def publish(staged, target, point, insert):
        def failing():
            raise __import__("sqlite3").OperationalError("database or disk is full")
        real(staged, target, point, failing)

    monkeypatch.setattr(store, "_publish", publish)
    with pytest.raises(DiskFull):
        store.add_model("m", "job1", _onnx(tmp_path), {})
    monkeypatch.undo()
    assert not (store.root / "models" / "m" / "1").exists()
    assert store.add_model("m", "job1", _onnx(tmp_path), {}).version == 1


# the folders are the state -------------------------------------------------------------------------

def _populated(tmp_path: Path) -> Store:
    store = Store(tmp_path / "data", min_free_mb=0)
    dataset = _add_dataset(store)
    _add_dataset(store, sha="b" * 64)
    _add_dataset(store, "paintings", "c" * 64)
    store.add_model("shapes", "job1", _onnx(tmp_path), {"arch": "x", "class_names": ["a"]})
    store.add_model("shapes", "job2", _onnx(tmp_path, b"other onnx"), {"arch": "x", "class_names": ["a"]})
    job = store.create_job("job1", dataset, "shapes", {"arch": "x"}, "")
    (job.run_dir / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in [
        {"type": "queued", "time": 1.0}, {"type": "started", "time": 2.0},
        {"type": "registered", "model_name": "shapes", "model_version": 1, "time": 3.0},
        {"type": "finished", "state": "succeeded", "time": 4.0}]))
    store.update_job("job1", state="succeeded", model_version=1, started_at=2.0, finished_at=4.0)
    store.create_job("job2", dataset, "shapes", {"arch": "y"}, "")
    return store


def _rows(store: Store):
    return ([(d.name, d.version, d.sha256, d.statistics) for d in store.list_datasets()],
            [(m.name, m.version, m.job_id, m.sha256, m.size_bytes, m.card) for m in store.list_models()],
            [(j.id, j.state, j.dataset_name, j.dataset_version, j.model_name, j.model_version, j.config)
             for j in store.list_jobs()])


def test_a_deleted_database_is_rebuilt_from_the_folders(tmp_path):
    store = _populated(tmp_path)
    before, files = _rows(store), _tree(store.root / "datasets") | _tree(store.root / "models")
    store._db.close()
    _forget_database(store.root)
    again = Store(store.root, min_free_mb=0)
    assert _rows(again) == before
    assert _tree(again.root / "datasets") | _tree(again.root / "models") == files
    assert not (again.root / "quarantine").exists()
    assert again.add_model("shapes", "job3", _onnx(tmp_path, b"third"), {}).version == 3
    assert again.add_dataset("shapes", "d" * 64, STATS, _staged_dataset(again))[0].version == 3


def test_a_deleted_database_with_its_journal_left_behind(tmp_path):
    store = _populated(tmp_path)
    before = _rows(store)
    (store.root / "artdet.db").unlink()  # only the main file: the -wal must not be replayed into a new one
    again = Store(store.root, min_free_mb=0)
    assert _rows(again) == before


def test_folders_without_rows_are_rebuilt_or_quarantined_never_deleted(tmp_path):
    store = _populated(tmp_path)
    store._db.close()
    root = store.root
    (root / "datasets" / "junk" / "v1").mkdir(parents=True)  # no dataset.json: cannot be rebuilt
    (root / "datasets" / "junk" / "v1" / "annotations.json").write_text("{}")
    (root / "models" / "shapes" / "9").mkdir()  # half a model
    (root / "models" / "shapes" / "9" / "model.onnx").write_bytes(b"partial")
    (root / "runs" / "orphan").mkdir()
    (root / "runs" / "orphan" / "worker.log").write_text("log")
    again = Store(root, min_free_mb=0)
    quarantined = {p.name.split("-", 1)[1]: p for p in (root / "quarantine").iterdir()}
    assert set(quarantined) == {"datasets_junk_v1", "models_shapes_9", "runs_orphan"}
    assert (quarantined["models_shapes_9"] / "model.onnx").read_bytes() == b"partial"
    assert (quarantined["runs_orphan"] / "worker.log").read_text() == "log"
    assert [m.version for m in again.list_models()] == [1, 2]
    assert sorted(again.report["quarantined"]) == ["datasets/junk/v1", "models/shapes/9", "runs/orphan"]


def test_a_crash_between_rename_and_insert_gets_its_row_back(tmp_path):
    store = _populated(tmp_path)
    # what a crash after the rename leaves: complete folders, no rows
    store._db.execute("DELETE FROM datasets WHERE name = 'paintings'")
    store._db.execute("DELETE FROM models WHERE version = 2")
    store._db.execute("DELETE FROM jobs WHERE id = 'job2'")
    store._db.close()
    again = Store(store.root, min_free_mb=0)
    assert [(d.name, d.version) for d in again.list_datasets()] == [("paintings", 1), ("shapes", 1), ("shapes", 2)]
    assert [(m.version, m.job_id) for m in again.list_models()] == [(1, "job1"), (2, "job2")]
    assert [j.id for j in again.list_jobs()] == ["job1", "job2"]
    assert again.get_job("job2").state == "queued"
    assert again.add_model("shapes", "job2", _onnx(tmp_path, b"other onnx"), {}).version == 2  # idempotent


def test_a_leftover_version_folder_does_not_block_the_next_version(tmp_path):
    store = Store(tmp_path / "data", min_free_mb=0)
    (store.root / "models" / "m" / "1").mkdir(parents=True)  # left by a crash, not yet reconciled
    (store.root / "models" / "m" / "1" / "model.onnx").write_bytes(b"left")
    (store.root / "datasets" / "d" / "v1").mkdir(parents=True)
    assert store.add_model("m", "job1", _onnx(tmp_path), {}).version == 2
    assert _add_dataset(store, "d").version == 2
    assert (store.root / "models" / "m" / "1" / "model.onnx").read_bytes() == b"left"


# permissions ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("umask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750)])
def test_published_files_follow_the_umask(tmp_path, umask, file_mode, dir_mode):
    previous = os.umask(umask)
    try:
        store = Store(tmp_path / "data", min_free_mb=0)
        dataset = _add_dataset(store)
        model = store.add_model("m", "job1", _onnx(tmp_path), {})
        save_json({"version": 1}, store.root / "models" / "m" / "active.json")
    finally:
        os.umask(previous)
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    for folder in (dataset.path, dataset.path / "images", model.path):
        assert mode(folder) == dir_mode, folder
    for file in (dataset.path / "dataset.json", dataset.path / "images" / "a.jpg", model.path / "model.onnx",
                 model.path / "model.json", store.root / "models" / "m" / "active.json"):
        assert mode(file) == file_mode, file


# the job runner ----------------------------------------------------------------------------------------

def test_a_job_is_queued_only_once_its_run_folder_exists(tmp_path, monkeypatch):
    from artdet.server.jobs import JobRunner

    store = Store(tmp_path / "data", min_free_mb=0)
    dataset = _add_dataset(store)
    seen = []
    real = store._db

    class Spy:
        def __getattr__(self, name):
            return getattr(real, name)

        def execute(self, sql, *args):
            if sql.startswith("INSERT INTO jobs"):
                run_dir = store.run_dir(args[0][0])
                seen.append(((run_dir / "job.json").is_file(), (run_dir / "events.jsonl").is_file()))
            return real.execute(sql, *args)

    store._db = Spy()
    job = JobRunner(store).submit(dataset, "m", {"arch": "x"})
    store._db = real
    assert seen == [(True, True)]
    assert json.loads((job.run_dir / "job.json").read_text())["config"] == {"arch": "x"}
    assert json.loads((job.run_dir / "events.jsonl").read_text().splitlines()[0])["type"] == "queued"


def test_a_job_without_its_run_folder_fails_visibly(tmp_path):
    from artdet.server.jobs import JobRunner

    store = Store(tmp_path / "data", min_free_mb=0)
    job = store.create_job("j1", _add_dataset(store), "m", {}, "")
    shutil.rmtree(job.run_dir)
    runner = JobRunner(store)
    runner._launch_queued()
    failed = store.get_job("j1")
    assert failed.state == "failed" and "no job.json" in failed.error and str(tmp_path) not in failed.error


def test_workers_start_in_their_own_session_without_preexec_fn(tmp_path, monkeypatch):
    from artdet.server import jobs

    calls = []

    class FakePopen:
        def __init__(self, args, **kwargs):
            calls.append(kwargs)
            self.pid = 999999

        def poll(self):
            return None

    monkeypatch.setattr(jobs.subprocess, "Popen", FakePopen)
    store = Store(tmp_path / "data", min_free_mb=0)
    store.create_job("j1", _add_dataset(store), "m", {}, "")
    runner = jobs.JobRunner(store)
    runner._launch_queued()
    assert len(calls) == 1 and "preexec_fn" not in calls[0] and calls[0]["start_new_session"] is True
    assert calls[0]["env"]["ARTDET_SERVER_PID"] == str(os.getpid())
    runner._running.clear()


def test_a_worker_whose_server_is_gone_exits_at_once(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    env = {**os.environ, "ARTDET_SERVER_PID": "1"}  # not our parent: the server is "gone"
    started = time.time()
    result = subprocess.run([sys.executable, "-m", "artdet.server.job_worker", str(run_dir)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 3 and "gone" in result.stderr, result.stderr
    assert time.time() - started < 20 and not (run_dir / "result.json").exists()


def test_a_worker_dies_with_its_parent(tmp_path):
    """A parent starts a child that calls die_with_parent, then exits; the kernel kills the child."""
    pid_file = tmp_path / "child.pid"
    child = (f"import os, time; from server.job_worker import die_with_parent; "
             f"assert die_with_parent(os.getppid()); open({str(pid_file)!r}, 'w').write(str(os.getpid())); "
             f"time.sleep(60)")
    parent = (f"import subprocess, sys, time, os; subprocess.Popen([sys.executable, '-c', {child!r}], "
              f"start_new_session=True); "
              f"[time.sleep(0.05) for _ in range(400) if not os.path.exists({str(pid_file)!r})]")
    subprocess.run([sys.executable, "-c", parent], cwd=ROOT, timeout=60, check=True)
    pid = int(pid_file.read_text())
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split()[2]
        except FileNotFoundError:
            break
        if state == "Z":
            break
        time.sleep(0.05)
    else:
        os.kill(pid, 9)
        raise AssertionError("the child outlived its parent")


def _exported_job(tmp_path: Path, store: Store):
    job = store.create_job("j1", _add_dataset(store), "m", {}, "")
    (job.run_dir / "model.onnx").write_bytes(b"onnx")
    save_json({"summary": {}, "export": {"parity": {"failures": [], "matched": 3}, "metadata": {}}},
              job.run_dir / "result.json")
    store.update_job(job.id, state="running", started_at=1.0)
    return job


def test_a_job_exported_before_a_crash_registers_on_restart_without_a_worker(tmp_path, monkeypatch):
    from artdet.server import jobs

    store = Store(tmp_path / "data", min_free_mb=0)
    _exported_job(tmp_path, store)
    monkeypatch.setattr(jobs.subprocess, "Popen", lambda *a, **k: pytest.fail("a worker was started"))
    registered = []

    def register(job, result):
        registered.append(job.id)
        return store.add_model(job.model_name, job.id, job.run_dir / "model.onnx", {}).version

    for _ in range(2):  # a second restart changes nothing
        runner = jobs.JobRunner(store, register=register)
        runner.start()
        deadline = time.time() + 10
        while store.get_job("j1").state != "succeeded" and time.time() < deadline:
            time.sleep(0.05)
        runner.stop()
    done = store.get_job("j1")
    assert (done.state, done.model_version, done.restarts) == ("succeeded", 1, 1)
    assert registered == ["j1"] and [m.version for m in store.list_models()] == [1]


def test_a_worker_that_ran_out_of_disk_fails_its_job_with_that_reason(tmp_path):
    from artdet.server import jobs

    store = Store(tmp_path / "data", min_free_mb=0)
    job = store.create_job("j1", _add_dataset(store), "m", {}, "")
    runner = jobs.JobRunner(store)
    runner._complete(job, 28, {"error": "disk full while writing checkpoint last.pt (0 MB free)"})
    assert store.get_job("j1").error == "disk full while writing checkpoint last.pt (0 MB free)"
    job = store.create_job("j2", store.get_dataset("shapes"), "m", {}, "")
    runner._complete(job, 28, {})  # not even result.json could be written
    assert store.get_job("j2").error.startswith("disk full in the training worker (")


def test_deleting_frees_space_even_below_the_floor(tmp_path, monkeypatch):
    store = Store(tmp_path / "data", min_free_mb=0)
    dataset = _add_dataset(store)
    model = store.add_model("m", "job1", _onnx(tmp_path), {})
    store.min_free_mb = store.free_mb() + 10_000_000
    monkeypatch.setattr("tempfile.mkdtemp", lambda *a, **k: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
    assert store.delete_dataset("shapes") == 1
    store.delete_model("m", 1)
    assert not dataset.path.exists() and not model.path.exists() and store.list_models() == []


# versions, listing, lookups and deletion, as a caller sees them ----------------------------------------

def test_dataset_versions_count_per_name_and_identical_content_is_reused(tmp_path):
    store = Store(tmp_path / "data", min_free_mb=0)
    first, reused = store.add_dataset("shapes", "a" * 64, STATS, _staged_dataset(store))
    assert (first.version, reused) == (1, False)
    assert _add_dataset(store, "shapes", "b" * 64).version == 2
    assert _add_dataset(store, "paintings", "a" * 64).version == 1  # another name counts from 1
    again, reused = store.add_dataset("shapes", "a" * 64, STATS, _staged_dataset(store))
    assert (again.version, reused) == (1, True)
    assert list((store.root / "tmp").iterdir()) == []  # the duplicate upload's staging folder is gone
    assert (first.path / "annotations.json").is_file() and first.path == store.dataset_dir("shapes", 1)
    assert store.get_dataset("shapes").version == 2  # no version: the latest
    assert store.get_dataset("shapes", 1).sha256 == "a" * 64
    assert store.get_dataset("shapes", 1).statistics == STATS
    assert [(d.name, d.version) for d in store.list_datasets()] == [("paintings", 1), ("shapes", 1), ("shapes", 2)]
    assert [d.version for d in store.list_datasets("shapes")] == [1, 2]
    from artdet.detector.errors import NotFound

    with pytest.raises(NotFound, match="'shapes' version 3"):
        store.get_dataset("shapes", 3)
    with pytest.raises(NotFound, match="'nosuch'"):
        store.get_dataset("nosuch")


def test_deleting_datasets_one_version_or_all_and_never_under_an_active_job(tmp_path):
    from artdet.detector.errors import FailedPrecondition, NotFound

    store = Store(tmp_path / "data", min_free_mb=0)
    v1, v2 = _add_dataset(store, "shapes", "a" * 64), _add_dataset(store, "shapes", "b" * 64)
    v3 = _add_dataset(store, "shapes", "c" * 64)
    store.create_job("j1", v2, "m", {}, "")
    with pytest.raises(FailedPrecondition, match="version 2 is used by job j1"):
        store.delete_dataset("shapes", 2)
    with pytest.raises(FailedPrecondition, match="j1"):
        store.delete_dataset("shapes")  # all versions: one of them is in use
    assert store.delete_dataset("shapes", 1) == 1  # a version no job uses
    assert not v1.path.exists() and [d.version for d in store.list_datasets("shapes")] == [2, 3]
    store.update_job("j1", state="running")
    with pytest.raises(FailedPrecondition):
        store.delete_dataset("shapes", 2)
    store.update_job("j1", state="succeeded")  # a finished job no longer holds its dataset
    assert store.delete_dataset("shapes") == 2
    assert store.list_datasets() == [] and not v2.path.exists() and not v3.path.exists()
    with pytest.raises(NotFound):
        store.delete_dataset("shapes")
    assert store.get_job("j1").dataset_version == 2  # the job's record stays


def test_jobs_keep_their_submission_order_and_filter_by_state(tmp_path):
    from artdet.detector.errors import NotFound

    store = Store(tmp_path / "data", min_free_mb=0)
    dataset = _add_dataset(store)
    for job_id in ("zz", "aa", "mm"):  # ids sort differently from the submission order
        created = store.create_job(job_id, dataset, "model", {"id": job_id}, "base/1" if job_id == "aa" else "")
        assert (created.state, created.model_version, created.restarts) == ("queued", 0, 0)
    assert [j.id for j in store.list_jobs()] == ["zz", "aa", "mm"]
    updated = store.update_job("aa", state="running", started_at=5.0)
    assert (updated.state, updated.started_at) == ("running", 5.0)
    assert [j.id for j in store.list_jobs("queued")] == ["zz", "mm"]
    assert [j.id for j in store.list_jobs("running")] == ["aa"]
    job = store.get_job("aa")
    assert (job.config, job.base_model, job.dataset_name, job.dataset_version) == ({"id": "aa"}, "base/1", "shapes", 1)
    assert json.loads((job.run_dir / "job.json").read_text())["config"] == {"id": "aa"}
    with pytest.raises(NotFound, match="'nope'"):
        store.get_job("nope")


def test_model_versions_per_name_their_cards_and_deletion(tmp_path):
    import hashlib

    from artdet.detector.errors import NotFound

    store = Store(tmp_path / "data", min_free_mb=0)
    one = store.add_model("shapes", "job1", _onnx(tmp_path, b"first"), {"arch": "x", "class_names": ["a"]})
    two = store.add_model("shapes", "job2", _onnx(tmp_path, b"second!"), {"arch": "x", "class_names": ["a"]})
    other = store.add_model("people", "job3", _onnx(tmp_path, b"third"), {"arch": "y"})
    assert (one.version, two.version, other.version) == (1, 2, 1)
    assert store.add_model("shapes", "job1", _onnx(tmp_path, b"first"), {}).version == 1  # the same job: no new one
    assert (two.sha256, two.size_bytes) == (hashlib.sha256(b"second!").hexdigest(), 7)
    assert two.onnx_path.read_bytes() == b"second!" and two.onnx_path == store.model_dir("shapes", 2) / "model.onnx"
    assert {k: two.card[k] for k in ("name", "version", "job_id", "arch")} == {"name": "shapes", "version": 2,
                                                                               "job_id": "job2", "arch": "x"}
    assert [(m.name, m.version) for m in store.list_models()] == [("people", 1), ("shapes", 1), ("shapes", 2)]
    assert [m.version for m in store.list_models("shapes")] == [1, 2]
    described = store.update_model_card("shapes", 2, class_info={"a": "the letter a"})
    assert described.card["class_info"] == {"a": "the letter a"} and described.card["arch"] == "x"
    assert store.get_model("shapes", 2).card["class_info"] == {"a": "the letter a"}
    store.delete_model("shapes", 1)
    assert [m.version for m in store.list_models("shapes")] == [2] and not one.path.exists()
    with pytest.raises(NotFound, match="'shapes' version 1"):
        store.get_model("shapes", 1)
    assert store.add_model("shapes", "job4", _onnx(tmp_path, b"fourth"), {}).version == 3
