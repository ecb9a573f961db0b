"""One training job in its own process: train (or resume), export ONNX with the parity check, report.

    ARTDET_SERVER_PID=<pid> python -m artdet.server.job_worker RUN_DIR

Reads RUN_DIR/job.json ({"config": TrainConfig dict, ...}); writes RUN_DIR/result.json. Events go to
RUN_DIR/events.jsonl through the engine's event log, which the server's WatchJob streams.

The server starts it in a session of its own and runs no Python between fork and exec; the worker itself
asks the kernel to SIGKILL it when its server dies (PR_SET_PDEATHSIG), and exits at once if the server
(ARTDET_SERVER_PID) is already gone. Exit status EXIT_DISK_FULL: the disk was full, even for result.json.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
import traceback
from pathlib import Path

from artdet.detector.errors import ArtdetError, DiskFull
from artdet.detector.events import append_event
from artdet.detector.files import is_disk_full, save_json

SERVER_PID_ENV = "ARTDET_SERVER_PID"
EXIT_DISK_FULL = 28
EXIT_ORPHANED = 3
PR_SET_PDEATHSIG = 1


def die_with_parent(server_pid: int | None) -> bool:
    """Have the kernel SIGKILL this process when its parent dies; False if that parent (the server whose
    pid is `server_pid`) is already gone. Set before the check, so no death slips in between."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the server's stop() still kills its workers
        pass
    return server_pid is None or os.getppid() == server_pid


def _fault_hooks() -> list:
    """Crash-test hook (server/faults.py): the first checkpoint of stage 2 takes worker and server down."""
    from artdet.server.faults import FAULT_ENV, fault_point

    if os.environ.get(FAULT_ENV) != "checkpoint-saved":
        return []
    from artdet.detector.trainer import Hook

    class CheckpointFault(Hook):
        order = Hook.SAVE + 2  # right after last.pt is written

        def after_epoch(self, trainer) -> None:
            if trainer.state.stage_index >= 1:
                fault_point("checkpoint-saved", with_parent=True)

    return [CheckpointFault()]


def run(run_dir: Path) -> dict:
    from artdet.detector.config import TrainConfig
    from artdet.detector.export import export_onnx, parity_image_count
    from artdet.detector.hooks import ExportEstimateHook
    from artdet.detector.training import load_datasets, train
    from artdet.detector.variants import VARIANTS, build_variants

    job = json.loads((run_dir / "job.json").read_text())
    config = TrainConfig.from_dict(job["config"])
    train_set, val = load_datasets(config)
    hooks = [*_fault_hooks(), ExportEstimateHook(len(val.images), parity_image_count(val))]
    if (run_dir / "checkpoints" / "last.pt").is_file():
        summary = train(None, run_dir, resume=True, progress=False, extra_hooks=hooks)
    else:
        summary = train(config, run_dir, progress=False, extra_hooks=hooks)
    append_event(run_dir, "exporting")
    exported = export_onnx(run_dir, run_dir / "model.onnx", val)
    append_event(run_dir, "exported", parity=exported["parity"])
    append_event(run_dir, "building_variants")
    _, variants = build_variants(run_dir / "model.onnx", val, VARIANTS, [r.path for r in train_set.images])
    reports = [{**v.to_dict(), "path": Path(v.path).name if v.path else ""} for v in variants]
    append_event(run_dir, "variants_built", variants=reports)
    return {"summary": summary, "export": exported, "variants": reports}


def _message(exc: BaseException) -> str:
    if isinstance(exc, DiskFull):
        return str(exc)
    if is_disk_full(exc):
        return "disk full while training"
    if isinstance(exc, ArtdetError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def main() -> int:
    run_dir = Path(sys.argv[1])
    server_pid = os.environ.get(SERVER_PID_ENV, "")
    if not die_with_parent(int(server_pid) if server_pid.isdigit() else None):
        print("artdet worker: the server that started this job is gone; exiting", file=sys.stderr)
        return EXIT_ORPHANED
    try:
        result = run(run_dir)
    except Exception as exc:  # reported to the server through result.json and the job's error field
        traceback.print_exc()
        try:
            save_json({"error": _message(exc)}, run_dir / "result.json")
        except (OSError, DiskFull):
            pass
        return EXIT_DISK_FULL if is_disk_full(exc) else 1
    try:
        save_json(result, run_dir / "result.json")
    except (OSError, DiskFull) as exc:
        traceback.print_exc()
        return EXIT_DISK_FULL if is_disk_full(exc) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
