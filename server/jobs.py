"""Training jobs: a FIFO queue served by worker processes, so training never blocks RPCs.

A job's process dies with the server (PR_SET_PDEATHSIG); at the next start, jobs that were running
are queued first again and resume from their last checkpoint.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from detector.files import save_json
from detector.errors import FailedPrecondition
from server.store import JOB_STATES, DatasetRow, JobRow, Store

log = logging.getLogger("artdet.jobs")
TERMINAL = ("succeeded", "failed", "cancelled")


def append_event(run_dir: Path, kind: str, **payload: Any) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / "events.jsonl").open("a", encoding="utf-8") as handle:
        handle.write(json.dumps({"type": kind, "time": time.time(), **payload}) + "\n")


def _die_with_parent() -> None:
    os.setsid()  # own process group, so cancel reaches DataLoader workers too
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


@dataclass
class _Running:
    job_id: str
    process: subprocess.Popen
    log_file: Any
    cancelled: bool = False


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
            append_event(job.run_dir, "restarted", note="server restarted; resuming from the last checkpoint")
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
        job_id = uuid.uuid4().hex[:12]
        job = self.store.create_job(job_id, dataset, model_name, config, base_model)
        save_json({"config": config, "dataset": f"{dataset.name}/v{dataset.version}"}, job.run_dir / "job.json")
        append_event(job.run_dir, "queued", dataset=dataset.name, dataset_version=dataset.version)
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
        (job.run_dir / "result.json").unlink(missing_ok=True)
        log_file = (job.run_dir / "worker.log").open("ab")
        env = {**os.environ, **self.worker_env}
        process = subprocess.Popen([sys.executable, "-m", "server.job_worker", str(job.run_dir)],
                                   stdout=log_file, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent,
                                   env=env, cwd=Path(__file__).resolve().parents[1])
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
        now = time.time()
        if running.cancelled:
            self.store.update_job(job.id, state="cancelled", finished_at=now)
            append_event(job.run_dir, "cancelled")
            append_event(job.run_dir, "finished", state="cancelled")
            return
        result_path = job.run_dir / "result.json"
        result = json.loads(result_path.read_text()) if result_path.is_file() else {}
        if running.process.returncode == 0 and "error" not in result and self.register is not None:
            try:
                version = self.register(job, result)
            except Exception as exc:  # registration problems fail the job, visibly
                log.exception("registering the model of job %s failed", job.id)
                result = {"error": f"registering the model failed: {exc}"}
            else:
                self.store.update_job(job.id, state="succeeded", model_version=version, finished_at=now)
                append_event(job.run_dir, "registered", model_name=job.model_name, model_version=version)
                append_event(job.run_dir, "finished", state="succeeded")
                return
        error = result.get("error") or self._log_tail(job.run_dir) or f"worker exited with {running.process.returncode}"
        self.store.update_job(job.id, state="failed", error=error, finished_at=now)
        append_event(job.run_dir, "failed", error=error)
        append_event(job.run_dir, "finished", state="failed")

    @staticmethod
    def _log_tail(run_dir: Path) -> str:
        path = run_dir / "worker.log"
        if not path.is_file():
            return ""
        lines = [l for l in path.read_text(errors="replace").splitlines() if l.strip()]
        return lines[-1][:500] if lines else ""

    def counts(self) -> dict[str, int]:
        counts = {state: 0 for state in JOB_STATES}
        for job in self.store.list_jobs():
            counts[job.state] += 1
        return counts
