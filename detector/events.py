"""A training job's event stream: what each event carries, its file, reading it back, and how it reads on a
console. The trainer, the job worker and the server write through `append_event`; `artdet train`,
`artdet jobs watch` and the server's WatchJob read through `read_events` and `format_event`."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

EVENTS_FILE = "events.jsonl"

# every event type and the fields it carries (besides "type" and "time")
FIELDS: dict[str, tuple[str, ...]] = {
    # the server's job runner
    "queued": ("dataset", "dataset_version"),
    "started": ("pid", "restarts"),
    "restarted": ("note",),
    "registered": ("model_name", "model_version"),
    "cancelled": (),
    "failed": ("error",),
    "finished": ("state",),
    # the job worker
    "exporting": (),
    "exported": ("parity",),
    "building_variants": (),
    "variants_built": ("variants",),
    # the training run
    "run_configured": ("run_id", "arch", "classes", "train_images", "val_images", "starting_point", "world_size",
                       "device"),
    "baseline": ("metrics",),
    "strategy": ("decision",),
    "resumed": ("stage_index", "epoch", "iteration"),
    "run_started": ("total_iterations", "resumed"),
    "stage_started": ("stage", "stage_index", "epochs", "backbone_layers", "lr", "trainable_parameters"),
    "step": ("stage", "stage_index", "epoch", "step", "steps_per_epoch", "iteration", "losses", "lr", "images",
             "eta_seconds"),
    "epoch_finished": ("stage", "stage_index", "epoch", "global_epoch"),
    "evaluated": ("metrics", "improved", "best_map"),
    "early_stopped": ("stage", "epochs_without_gain"),
    "checkpoint_saved": ("checkpoint",),
    "run_finished": ("iterations",),
    "summary": ("summary",),
}


def new_event(kind: str, **fields: Any) -> dict[str, Any]:
    """An event of `kind` with exactly the fields FIELDS lists for it (a writer's mistake is a bug: ValueError)."""
    expected = FIELDS.get(kind)
    if expected is None:
        raise ValueError(f"unknown event type {kind!r}")
    if set(fields) != set(expected):
        raise ValueError(f"event {kind!r} carries {sorted(expected)}, not {sorted(fields)}")
    return {"type": kind, "time": time.time(), **fields}


def append_event(run_dir: Path, kind: str, **fields: Any) -> dict[str, Any]:
    event = new_event(kind, **fields)
    write_event(run_dir / EVENTS_FILE, event)
    return event


def write_event(path: Path, event: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(event) + "\n")


def read_events(path: Path, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """The complete events from byte `offset` on, and the offset after the last complete line (a line still
    being written is left for the next call). A line that is not an event is skipped."""
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            data = handle.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1
    events = []
    for line in data[:end].splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("type") in FIELDS:
            events.append(event)
    return events, offset + end


def _metrics(metrics: dict[str, Any]) -> str:
    return f"val mAP {metrics.get('map', 0.0):.4f} AP50 {metrics.get('ap50', 0.0):.4f}"


def format_event(event: dict[str, Any]) -> str | None:
    """One line for a console, or None for events a console shows otherwise (steps: a progress bar) or not at all."""
    kind, e = event.get("type"), event
    if kind == "queued":
        return f"queued: dataset {e['dataset']} v{e['dataset_version']}"
    if kind == "started":
        return f"started: worker pid {e['pid']}" + (f" (restart {e['restarts']})" if e["restarts"] else "")
    if kind in ("restarted", "failed"):
        return f"{kind}: {e['note' if kind == 'restarted' else 'error']}"
    if kind == "registered":
        return f"registered: model {e['model_name']} v{e['model_version']}"
    if kind == "cancelled":
        return "cancelled"
    if kind == "finished":
        return f"finished: {e['state']}"
    if kind == "exporting":
        return "exporting to ONNX, then checking it against PyTorch"
    if kind == "exported":
        parity = e["parity"] or {}
        return "exported; parity: " + parity.get("summary", "not checked")
    if kind == "building_variants":
        return "building the int8, fp16 and ORT-format variants, each measured against fp32"
    if kind == "variants_built":
        return "variants: " + "; ".join(
            f"{v['kind']} refused ({v['refused']})" if v["refused"] else
            f"{v['kind']} {v['size_bytes'] / 1e6:.1f} MB, AP50 {v['ap50']:.3f}" for v in e["variants"])
    if kind == "run_configured":
        return (f"run {e['run_id']}: {e['arch']}, {len(e['classes'])} classes, {e['train_images']} training and "
                f"{e['val_images']} validation images, on {e['device']}"
                + (f" x{e['world_size']}" if e["world_size"] > 1 else ""))
    if kind == "baseline":
        return f"before fine-tuning: {_metrics(e['metrics'])}"
    if kind == "strategy":
        decision = e["decision"]
        return f"strategy {decision['strategy']}: {decision['reasons'][-1]}"
    if kind == "resumed":
        return f"resumed at stage {e['stage_index'] + 1}, epoch {e['epoch'] + 1} (iteration {e['iteration']})"
    if kind == "stage_started":
        return (f"stage {e['stage']}: {e['epochs']} epoch(s), {e['backbone_layers']} trainable backbone stage(s), "
                f"lr {e['lr']:.3g}, {e['trainable_parameters']:,} parameters")
    if kind == "evaluated":
        m = e["metrics"]
        return f"[{m['stage']} epoch {m['epoch']}] {_metrics(m)}" + ("  (best)" if e["improved"] else "")
    if kind == "early_stopped":
        return f"early stopping: {e['stage']} ended after {e['epochs_without_gain']} epochs without a better mAP"
    return None


def format_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class ProgressDisplay:
    """Shows an event stream on a console: a bar per epoch drawn from step events (loss, lr and the trainer's
    ETA; no rates, which a replayed stream would make up), one line for each other event."""

    BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt}{postfix}"

    def __init__(self, out: TextIO | None = None, bars: bool = True):
        self.out = out
        self.bars = bars
        self._bar = None

    def show(self, event: dict[str, Any]) -> None:
        from tqdm import tqdm

        if event.get("type") == "step":
            if not self.bars:
                return
            description = f"{event['stage']} epoch {event['epoch']}"
            if self._bar is None or self._bar.desc != description:
                self.close()
                self._bar = tqdm(total=event["steps_per_epoch"], desc=description, leave=False,
                                 bar_format=self.BAR_FORMAT, file=self.out or sys.stderr)
            self._bar.n = event["step"]
            self._bar.set_postfix_str(f"loss {event['losses'].get('loss', 0.0):.3f}, lr {event['lr']:.2e}, "
                                      f"ETA {format_seconds(event['eta_seconds'])}")
            return
        if event.get("type") == "epoch_finished":
            self.close()
        line = format_event(event)
        if line is not None:
            tqdm.write(line, file=self.out or sys.stderr)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
