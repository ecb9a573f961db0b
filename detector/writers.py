"""Where a run's events go (rank 0): its events.jsonl, TensorBoard, the console."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from artdet.detector.events import ProgressDisplay, write_event
from artdet.detector.trainer import EventWriter

METRIC_KEYS = ("map", "ap50", "ap75")


class EventLogWriter(EventWriter):
    """Every event as a JSON line: the replayable history a server's WatchJob streams."""

    def __init__(self, path: Path):
        self.path = path

    def write(self, event: dict[str, Any]) -> None:
        write_event(self.path, event)


class TensorBoardWriter(EventWriter):
    """Training losses and learning rate per iteration; validation metrics and per-class AP per epoch, the
    baseline's at step 0; at the summary, `hparams` (the run's configuration) against the final mAP and AP50,
    and the plots it names (files in the run directory, the log directory's parent) as images."""

    def __init__(self, log_dir: Path, hparams: dict[str, Any] | None = None):
        self.log_dir = log_dir
        self.hparams = hparams or {}
        self.writer = None

    def write(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind not in ("step", "baseline", "evaluated", "summary"):
            return
        if self.writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.log_dir))
        if kind == "step":
            for name, value in event["losses"].items():
                self.writer.add_scalar(f"train/{name}", value, event["iteration"])
            self.writer.add_scalar("train/lr", event["lr"], event["iteration"])
        elif kind == "baseline":
            self._evaluation(event["metrics"], 0)
        elif kind == "evaluated":
            self._evaluation(event["metrics"], event["metrics"]["iteration"])
        else:
            try:
                self._summary(event["summary"])
            except Exception as exc:  # extras written after the model and metrics: they never fail the run
                print(f"artdet: TensorBoard's summary (hparams, plots) was not written: {type(exc).__name__}: {exc}",
                      file=sys.stderr)

    def _evaluation(self, metrics: dict[str, Any], step: int) -> None:
        for key in METRIC_KEYS:
            self.writer.add_scalar(f"val/{key}", metrics[key], step)
        for name, ap in metrics["per_class_ap"].items():
            if ap is not None:  # None: no ground truth of the class
                self.writer.add_scalar(f"ap_per_class/{name}", ap, step)

    def _summary(self, summary: dict[str, Any]) -> None:
        from torch.utils.tensorboard.summary import hparams

        final = summary["final"]
        step = final.get("iteration", 0)
        if final:
            values = {"hparam/map": final["map"], "hparam/ap50": final["ap50"]}
            for protobuf in hparams(hparam_values(self.hparams), values):
                self.writer.file_writer.add_summary(protobuf, step)
            for tag, value in values.items():
                self.writer.add_scalar(tag, value, step)
        for name in summary.get("plots", []):
            with Image.open(self.log_dir.parent / name) as image:
                pixels = np.asarray(image.convert("RGB"))
            self.writer.add_image(f"plots/{Path(name).stem}", pixels, step, dataformats="HWC")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def hparam_values(config: dict[str, Any], prefix: str = "") -> dict[str, bool | int | float | str]:
    """A configuration as TensorBoard's hparams take it: nested keys dotted, values other than numbers, text
    and booleans as text."""
    values: dict[str, bool | int | float | str] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            values.update(hparam_values(value, f"{prefix}{key}."))
        else:
            values[prefix + key] = value if isinstance(value, (bool, int, float, str)) else str(value)
    return values


class ConsoleWriter(EventWriter):
    """Progress bars and one line per event, as `artdet jobs watch` shows a job on the server."""

    def __init__(self):
        self.display = ProgressDisplay()

    def write(self, event: dict[str, Any]) -> None:
        self.display.show(event)

    def close(self) -> None:
        self.display.close()
