"""One training job in its own process: train (or resume), export ONNX with the parity check, report.

    python -m server.job_worker RUN_DIR

Reads RUN_DIR/job.json ({"config": TrainConfig dict}); writes RUN_DIR/result.json. Events go to
RUN_DIR/events.jsonl through the engine's event log, which the server's WatchJob streams.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path

from detector.files import save_json


def _event(run_dir: Path, kind: str, **payload) -> None:
    with (run_dir / "events.jsonl").open("a", encoding="utf-8") as handle:
        handle.write(json.dumps({"type": kind, "time": time.time(), **payload}) + "\n")


def run(run_dir: Path) -> dict:
    from detector.config import TrainConfig
    from detector.export import export_onnx
    from detector.training import load_datasets, train

    job = json.loads((run_dir / "job.json").read_text())
    config = TrainConfig.from_dict(job["config"])
    if (run_dir / "checkpoints" / "last.pt").is_file():
        summary = train(None, run_dir, resume=True, progress=False)
    else:
        summary = train(config, run_dir, progress=False)
    _event(run_dir, "exporting")
    exported = export_onnx(run_dir, run_dir / "model.onnx", load_datasets(config)[1])
    _event(run_dir, "exported", parity=exported["parity"])
    return {"summary": summary, "export": exported}


def main() -> int:
    run_dir = Path(sys.argv[1])
    try:
        result = run(run_dir)
    except Exception as exc:  # reported to the server through result.json and the job's error field
        save_json({"error": f"{type(exc).__name__}: {exc}"}, run_dir / "result.json")
        traceback.print_exc()
        return 1
    save_json(result, run_dir / "result.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
