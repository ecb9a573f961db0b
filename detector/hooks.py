"""Hooks on the training loop: evaluation, early stopping, checkpoints, progress bars, TensorBoard, event log."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from tqdm import tqdm

from detector.checkpoint import capture_rng, save_torch
from detector.distributed import broadcast_from_main
from detector.trainer import Hook, Trainer

METRIC_KEYS = ("map", "ap50", "ap75")


class EvaluationHook(Hook):
    """Validation mAP after every epoch (rank 0), shared with every rank; tracks the best epoch."""

    def __init__(self, evaluate: Callable[[], dict[str, Any]]):
        self.evaluate = evaluate
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None

    def on_event(self, trainer: Trainer, event: dict[str, Any]) -> None:
        if event["type"] != "epoch_finished":
            return
        metrics = self.evaluate() if trainer.ctx.is_main else None
        metrics = broadcast_from_main(trainer.ctx, metrics)
        record = {"stage": event["stage"], "stage_index": event["stage_index"], "epoch": event["epoch"],
                  "global_epoch": event["global_epoch"], "iteration": trainer.state.iteration, **metrics}
        self.history.append(record)
        improved = self.best is None or record["map"] > self.best["map"]
        if improved:
            self.best = record
        trainer.emit("evaluated", metrics=record, improved=improved, best_map=self.best["map"])

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history, "best": self.best}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history, self.best = state["history"], state["best"]


class EarlyStoppingHook(Hook):
    """Ends a stage (not the run) after `patience` evaluations without a better stage mAP."""

    def __init__(self, patience: int):
        self.patience = patience
        self.stage_best = -1.0
        self.stale = 0
        self.stage_index = -1

    def on_event(self, trainer: Trainer, event: dict[str, Any]) -> None:
        if event["type"] == "stage_started" and event["stage_index"] != self.stage_index:
            self.stage_index, self.stage_best, self.stale = event["stage_index"], -1.0, 0
        if event["type"] != "evaluated" or not self.patience:
            return
        value = event["metrics"]["map"]
        if value > self.stage_best:
            self.stage_best, self.stale = value, 0
        else:
            self.stale += 1
        if self.stale >= self.patience and trainer.state.epoch < trainer.stage.epochs:
            trainer.state.stop_stage = True
            trainer.emit("early_stopped", stage=trainer.stage.name, epochs_without_gain=self.stale)

    def state_dict(self) -> dict[str, Any]:
        return {"stage_best": self.stage_best, "stale": self.stale, "stage_index": self.stage_index}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stage_best, self.stale, self.stage_index = state["stage_best"], state["stale"], state["stage_index"]


class CheckpointHook(Hook):
    """After each epoch (rank 0): last.pt with everything a resume needs; best.pt when mAP improved.

    Put it after EvaluationHook and EarlyStoppingHook so the saved state includes their decisions.
    """

    def __init__(self, checkpoint_dir: Path, model_payload: Callable[[], dict[str, Any]],
                 run_state: Callable[[], dict[str, Any]]):
        self.checkpoint_dir = checkpoint_dir
        self.model_payload = model_payload
        self.run_state = run_state
        self.save_best = False

    def on_event(self, trainer: Trainer, event: dict[str, Any]) -> None:
        if event["type"] == "evaluated":
            self.save_best = event["improved"]
        if event["type"] != "epoch_finished" or not trainer.ctx.is_main:
            return
        payload = self.model_payload()
        if self.save_best:
            save_torch(payload, self.checkpoint_dir / "best.pt")
        save_torch({
            **payload,
            "trainer": {"stage_index": trainer.state.stage_index, "epoch": trainer.state.epoch,
                        "iteration": trainer.state.iteration, "stop_stage": trainer.state.stop_stage},
            "optimizer_state": trainer.optimizer_state(),
            "hooks": trainer.hook_states(),
            "rng": capture_rng(),
            "run": self.run_state(),
        }, self.checkpoint_dir / "last.pt")
        trainer.emit("checkpoint_saved", path=str(self.checkpoint_dir / "last.pt"), best=self.save_best)


def _scalar_losses(event: dict[str, Any]) -> dict[str, float]:
    return {k: round(v, 4) for k, v in event["losses"].items()}


class ProgressHook(Hook):
    """tqdm bars for the command line (rank 0)."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.bar: tqdm | None = None

    def on_event(self, trainer: Trainer, event: dict[str, Any]) -> None:
        if not (self.enabled and trainer.ctx.is_main):
            return
        kind = event["type"]
        if kind == "step":
            if self.bar is None:
                self.bar = tqdm(total=event["steps_per_epoch"], leave=False,
                                desc=f"{event['stage']} epoch {event['epoch']}/{trainer.stage.epochs}")
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{event['losses']['loss']:.3f}", lr=f"{event['lr']:.2e}")
        elif kind == "epoch_finished" and self.bar is not None:
            self.bar.close()
            self.bar = None
        elif kind == "evaluated":
            m = event["metrics"]
            tqdm.write(f"[{m['stage']} epoch {m['epoch']}] val mAP {m['map']:.4f} AP50 {m['ap50']:.4f}"
                       f"{'  (best)' if event['improved'] else ''}")
        elif kind == "stage_started":
            tqdm.write(f"stage {event['stage']}: {event['epochs']} epoch(s), {event['backbone_layers']} trainable "
                       f"backbone stage(s), lr {event['lr']:.3g}, {event['trainable_parameters']:,} parameters")
        elif kind == "early_stopped":
            tqdm.write(f"early stopping: {event['stage']} ended after {event['epochs_without_gain']} epochs "
                       "without a better mAP")


class TensorBoardHook(Hook):
    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.writer = None

    def on_event(self, trainer: Trainer, event: dict[str, Any]) -> None:
        if not trainer.ctx.is_main:
            return
        if self.writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.log_dir))
        kind = event["type"]
        if kind == "step":
            for name, value in event["losses"].items():
                self.writer.add_scalar(f"train/{name}", value, event["iteration"])
            self.writer.add_scalar("train/lr", event["lr"], event["iteration"])
        elif kind == "evaluated":
            for key in METRIC_KEYS:
                self.writer.add_scalar(f"val/{key}", event["metrics"][key], event["metrics"]["iteration"])
        elif kind == "run_finished":
            self.writer.close()
            self.writer = None


class EventLogHook(Hook):
    """Appends every event as a JSON line: the replayable history a server's watch stream reads."""

    def __init__(self, path: Path, step_every: int = 1):
        self.path = path
        self.step_every = max(1, step_every)

    def on_event(self, trainer: Trainer, event: dict[str, Any]) -> None:
        if not trainer.ctx.is_main:
            return
        if event["type"] == "step" and event["iteration"] % self.step_every and event["step"] != 1:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(event) + "\n")
