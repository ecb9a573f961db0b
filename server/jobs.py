"""Training jobs: a FIFO queue served by worker processes, so training never blocks RPCs.

A worker runs in its own session (so a cancel reaches its DataLoader workers too) and sets its own
parent-death signal at startup (server/job_worker.py): no Python runs between fork and exec here, which a
threaded gRPC process cannot afford (preexec_fn). At the next start, jobs that were running are queued
first again and resume from their last checkpoint; one whose model was already exported (result.json,
model.onnx, parity passed) is registered without a worker. A succeeded job keeps best.pt (for retraining)
and drops last.pt and its model.onnx (the registered model is a copy of it).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from artdet.detector.errors import ArtdetError, FailedPrecondition, redact_paths
from artdet.detector.events import append_event
from artdet.detector.files import is_disk_full
from artdet.detector.model_card import VARIANT_SUFFIXES
from artdet.server.faults import fault_point
from artdet.server.job_worker import EXIT_DISK_FULL, SERVER_PID_ENV
from artdet.server.store import JOB_STATES, DatasetRow, JobRow, Store

log = logging.getLogger("artdet.jobs")
TERMINAL = ("succeeded", "failed", "cancelled")


def exported_result(run_dir: Path) -> dict[str, Any] | None:
    """The worker's result when it finished exporting (model.onnx written, parity passed), else None."""
    try:
        result = json.loads((run_dir / "result.json").read_text())
    except (OSError, ValueError):
        return None
    export = result.get("export") if isinstance(result, dict) else None
    if "error" in result or not isinstance(export, dict) or not (run_dir / "model.onnx").is_file():
        return None
    parity = export.get("parity")
    if not isinstance(parity, dict) or parity.get("failures"):
        return None
    return result


def trim_succeeded_run(run_dir: Path) -> None:
    """What a registered job no longer needs: the resume checkpoint and its copies of the registered ONNX and
    variants. best.pt stays, for retraining the model (base_model)."""
    for name in ("checkpoints/last.pt", "model.onnx", *(f"model{suffix}" for suffix in VARIANT_SUFFIXES.values())):
        (run_dir / name).unlink(missing_ok=True)


@dataclass
class _Running:
    job_id: str
    process: subprocess.Popen
    log_file: Any
    cancelled: bool = False


def log_tail(run_dir: Path, lines: int, max_bytes: int = 64 << 10) -> str:
    """The last non-blank `lines` of a job's worker log, with server paths redacted."""
    path = run_dir / "worker.log"
    try:
        with path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - max_bytes))
            text = handle.read().decode(errors="replace")
    except OSError:
        return ""
    kept = [line for line in text.splitlines() if line.strip()][-lines:]
    return redact_paths("\n".join(kept))


class JobRunner:
    def __init__(self, store: Store, concurrency: int = 1,
                 register: Callable[[JobRow, dict[str, Any]], int] | None = None, poll_seconds: float = 0.2,
                 worker_env: dict[str, str] | None = None):
        self.store = store
        self.concurrency = max(1, concurrency)
        self.register = register
        self.poll_seconds = poll_seconds
        self.worker_env = worker_env or {}
        self._running: dict[str, _Running] = {}
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="job-runner", daemon=True)
        self.on_state_change: Callable[[], None] = lambda: None

    # lifecycle -----------------------------------------------------------------------------------
    def start(self) -> None:
        for job in self.store.list_jobs("running"):
            self.store.update_job(job.id, state="queued", restarts=job.restarts + 1)
            note = ("server restarted; registering the model exported before the restart"
                    if exported_result(job.run_dir) else "server restarted; resuming from the last checkpoint")
            append_event(job.run_dir, "restarted", note=note)
        for job in self.store.list_jobs("succeeded"):  # one that succeeded just before a crash
            trim_succeeded_run(job.run_dir)
        self._thread.start()

    def stop(self) -> None:
        """Stop supervising; workers are killed and their jobs stay 'running' so the next start resumes them."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=10)
        with self._lock:
            for running in self._running.values():
                self._kill(running.process)
                running.log_file.close()
            self._running.clear()

    # requests ------------------------------------------------------------------------------------
    def submit(self, dataset: DatasetRow, model_name: str, config: dict[str, Any], base_model: str = "") -> JobRow:
        """The run folder, its job.json and its first event exist before the job's row: the runner never
        picks a job whose folder is not there yet."""
        self.store.ensure_free_space()
        job_id = uuid.uuid4().hex[:12]
        run_dir = self.store.run_dir(job_id)
        try:
            append_event(run_dir, "queued", dataset=dataset.name, dataset_version=dataset.version)
            job = self.store.create_job(job_id, dataset, model_name, config, base_model)
        except BaseException as exc:
            shutil.rmtree(run_dir, ignore_errors=True)  # only ever this call's new folder
            if is_disk_full(exc) and not str(exc).startswith("data directory full"):
                raise self.store.disk_full() from exc
            raise
        self._wake.set()
        return job

    def cancel(self, job_id: str) -> JobRow:
        with self._lock:
            job = self.store.get_job(job_id)
            if job.state in TERMINAL:
                raise FailedPrecondition(f"job {job_id} already ended ({job.state})")
            running = self._running.get(job_id)
            if running is None:
                job = self.store.update_job(job_id, state="cancelled", finished_at=time.time())
                append_event(job.run_dir, "cancelled")
                append_event(job.run_dir, "finished", state="cancelled")
                return job
            running.cancelled = True
            self._kill(running.process)
        self._reap_until(job_id)
        return self.store.get_job(job_id)

    def delete(self, job_id: str) -> int:
        """Delete an ended job (Store.delete_job) while no job changes state."""
        with self._lock:
            return self.store.delete_job(job_id)

    def _reap_until(self, job_id: str, timeout: float = 30.0) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            self._reap()
            if job_id not in self._running:
                return
            time.sleep(0.05)

    # the loop ------------------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._reap()
                self._launch_queued()
            except Exception:  # the supervisor must survive anything one job does
                log.exception("job runner iteration failed")
            self._wake.wait(self.poll_seconds)
            self._wake.clear()

    def _launch_queued(self) -> None:
        with self._lock:
            if self._stop.is_set():
                return
            for job in self.store.list_jobs("queued"):
                if len(self._running) >= self.concurrency:
                    return
                self._launch(job)

    def _launch(self, job: JobRow) -> None:
        result = exported_result(job.run_dir)
        if result is not None:  # exported before the server went down: register it, do not train again
            self._complete(job, 0, result)
            self.on_state_change()
            return
        try:
            if not (job.run_dir / "job.json").is_file():
                raise FailedPrecondition(f"job {job.id}: its run folder has no job.json")
            (job.run_dir / "result.json").unlink(missing_ok=True)
            log_file = (job.run_dir / "worker.log").open("ab")
        except Exception as exc:  # a job that cannot start fails visibly; the loop goes on
            log.exception("starting job %s failed", job.id)
            self._fail(job, f"starting the worker failed: {self._describe(exc)}")
            self.on_state_change()
            return
        env = {**os.environ, **self.worker_env, SERVER_PID_ENV: str(os.getpid())}
        try:
            # no preexec_fn: the worker sets its own parent-death signal (server/job_worker.py). That signal
            # follows the thread that forked it, so workers are started only from the runner's own thread,
            # which lives as long as the runner does.
            process = subprocess.Popen([sys.executable, "-m", "artdet.server.job_worker", str(job.run_dir)],
                                       stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
                                       env=env, cwd=job.run_dir)
        except Exception as exc:
            log_file.close()
            log.exception("starting job %s failed", job.id)
            self._fail(job, f"starting the worker failed: {self._describe(exc)}")
            self.on_state_change()
            return
        self._running[job.id] = _Running(job.id, process, log_file)
        self.store.update_job(job.id, state="running", started_at=job.started_at or time.time())
        append_event(job.run_dir, "started", pid=process.pid, restarts=job.restarts)
        self.on_state_change()

    @staticmethod
    def _kill(process: subprocess.Popen) -> None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def _reap(self) -> None:
        with self._lock:
            finished = [r for r in self._running.values() if r.process.poll() is not None]
            for running in finished:
                del self._running[running.job_id]
                running.log_file.close()
                self._finish(running)
        if finished:
            self.on_state_change()
            self._wake.set()

    def _finish(self, running: _Running) -> None:
        job = self.store.get_job(running.job_id)
        if running.cancelled:
            self.store.update_job(job.id, state="cancelled", finished_at=time.time())
            append_event(job.run_dir, "cancelled")
            append_event(job.run_dir, "finished", state="cancelled")
            return
        try:
            result = json.loads((job.run_dir / "result.json").read_text())
        except (OSError, ValueError):
            result = {}
        self._complete(job, running.process.returncode, result if isinstance(result, dict) else {})

    def _complete(self, job: JobRow, returncode: int, result: dict[str, Any]) -> None:
        """Register the model of a worker that succeeded, or fail the job with the worker's error."""
        if returncode == 0 and "error" not in result and self.register is not None:
            fault_point("exported")
            try:
                version = self.register(job, result)
            except Exception as exc:  # registration problems fail the job, visibly
                log.exception("registering the model of job %s failed", job.id)
                self._fail(job, f"registering the model failed: {self._describe(exc)}")
                return
            self.store.update_job(job.id, state="succeeded", model_version=version, finished_at=time.time())
            append_event(job.run_dir, "registered", model_name=job.model_name, model_version=version)
            append_event(job.run_dir, "finished", state="succeeded")
            trim_succeeded_run(job.run_dir)
            return
        error = result.get("error") or ""
        if not error and returncode == EXIT_DISK_FULL:
            error = f"disk full in the training worker ({self.store.free_mb()} MB free)"
        self._fail(job, error or log_tail(job.run_dir, 1)[:500] or f"worker exited with {returncode}")

    def _fail(self, job: JobRow, error: str) -> None:
        error = redact_paths(error)
        self.store.update_job(job.id, state="failed", error=error, finished_at=time.time())
        try:
            append_event(job.run_dir, "failed", error=error)
            append_event(job.run_dir, "finished", state="failed")
        except OSError:  # a full disk or a missing folder: the row says it all
            log.warning("could not record the failure of job %s in its events", job.id, exc_info=True)

    def _describe(self, exc: BaseException) -> str:
        if is_disk_full(exc):
            return str(exc) if str(exc).startswith("data directory full") else str(self.store.disk_full())
        if isinstance(exc, ArtdetError):
            return str(exc)
        return f"{type(exc).__name__}: {exc}"

    def counts(self) -> dict[str, int]:
        counts = {state: 0 for state in JOB_STATES}
        for job in self.store.list_jobs():
            counts[job.state] += 1
        return counts
