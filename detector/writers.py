"""Where a run's events go (rank 0): its events.jsonl, TensorBoard, the console."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from detector.events import ProgressDisplay, write_event
from detector.trainer import EventWriter

METRIC_KEYS = ("map", "ap50", "ap75")


class EventLogWriter(EventWriter):
    """Every event as a JSON line: the replayable history a server's WatchJob streams."""

    def __init__(self, path: Path):
        self.path = path

    def write(self, event: dict[str, Any]) -> None:
        write_event(self.path, event)


class TensorBoardWriter(EventWriter):
    """Training losses and learning rate per iteration, validation metrics per epoch."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.writer = None

    def write(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind not in ("step", "evaluated"):
            return
        if self.writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.log_dir))
        if kind == "step":
            for name, value in event["losses"].items():
                self.writer.add_scalar(f"train/{name}", value, event["iteration"])
            self.writer.add_scalar("train/lr", event["lr"], event["iteration"])
        else:
            for key in METRIC_KEYS:
                self.writer.add_scalar(f"val/{key}", event["metrics"][key], event["metrics"]["iteration"])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class ConsoleWriter(EventWriter):
    """Progress bars and one line per event, as `artdet jobs watch` shows a job on the server."""

    def __init__(self):
        self.display = ProgressDisplay()

    def write(self, event: dict[str, Any]) -> None:
        self.display.show(event)

    def close(self) -> None:
        self.display.close()
