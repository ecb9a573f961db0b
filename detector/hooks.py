"""Hooks on the training loop: evaluation, early stopping, best and periodic checkpoints, the export's ETA."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from torch import nn

from artdet.detector.checkpoint import save_torch
from artdet.detector.distributed import broadcast_from_main
from artdet.detector.trainer import Hook, Trainer


class EvaluationHook(Hook):
    """Validation mAP after every epoch (rank 0), shared with every rank and recorded in the storage."""

    order = Hook.EVALUATE

    def __init__(self, evaluate: Callable[[nn.Module], dict[str, Any]]):
        self.evaluate = evaluate

    def after_epoch(self, trainer: Trainer) -> None:
        metrics = broadcast_from_main(trainer.ctx, self.evaluate(trainer.evaluated_model) if trainer.ctx.is_main
                                      else None)
        epoch = trainer.storage.latest["epoch_finished"]
        record = {"stage": epoch["stage"], "stage_index": epoch["stage_index"], "epoch": epoch["epoch"],
                  "global_epoch": epoch["global_epoch"], "iteration": trainer.state.iteration, **metrics}
        improved = trainer.storage.add_evaluation(record)
        trainer.storage.put("evaluated", metrics=record, improved=improved, best_map=trainer.storage.best["map"])


class EarlyStoppingHook(Hook):
    """Ends a stage (not the run) after `patience` evaluations without a better mAP within the stage."""

    order = Hook.DECIDE

    def __init__(self, patience: int):
        self.patience = patience
        self.stage_best = -1.0
        self.stale = 0
        self.stage_index = -1

    def before_stage(self, trainer: Trainer) -> None:
        if trainer.state.stage_index != self.stage_index:  # a resumed stage keeps its count
            self.stage_index, self.stage_best, self.stale = trainer.state.stage_index, -1.0, 0

    def after_epoch(self, trainer: Trainer) -> None:
        if not self.patience:
            return
        value = trainer.storage.latest["evaluated"]["metrics"]["map"]
        if value > self.stage_best:
            self.stage_best, self.stale = value, 0
        else:
            self.stale += 1
        if self.stale >= self.patience and trainer.state.epoch < trainer.stage.epochs:
            trainer.state.stop_stage = True
            trainer.storage.put("early_stopped", stage=trainer.stage.name, epochs_without_gain=self.stale)

    def state_dict(self) -> dict[str, Any]:
        return {"stage_best": self.stage_best, "stale": self.stale, "stage_index": self.stage_index}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stage_best, self.stale, self.stage_index = state["stage_best"], state["stale"], state["stage_index"]


class BestCheckpointHook(Hook):
    """best.pt (the model alone: the input to export and retraining) whenever validation mAP improved."""

    order = Hook.SAVE

    def __init__(self, path: Path):
        self.path = path

    def after_epoch(self, trainer: Trainer) -> None:
        if trainer.ctx.is_main and trainer.storage.latest["evaluated"]["improved"]:
            save_torch(trainer.model_payload(trainer.evaluated_model), self.path)
            trainer.storage.put("checkpoint_saved", checkpoint=self.path.name)


class PeriodicCheckpointHook(Hook):
    """last.pt (everything a resume needs) after every epoch; after the best checkpoint, so that a run resumed
    from it never lacks the best.pt its storage refers to."""

    order = Hook.SAVE + 1

    def __init__(self, path: Path):
        self.path = path

    def after_epoch(self, trainer: Trainer) -> None:
        if trainer.ctx.is_main:
            save_torch(trainer.state_dict(), self.path)
            trainer.storage.put("checkpoint_saved", checkpoint=self.path.name)


class ExportEstimateHook(Hook):
    """Adds the export that follows training (a server job's) to the ETA: tracing (about two model runs) and
    the parity check (each parity image through PyTorch twice, with and without NMS, and through ONNX), at the
    last evaluation's cost per image."""

    def __init__(self, validation_images: int, parity_images: int):
        self.validation_images = validation_images
        self.parity_images = parity_images

    def before_train(self, trainer: Trainer) -> None:
        self.after_epoch(trainer)

    def after_epoch(self, trainer: Trainer) -> None:
        per_image = trainer.epoch_overhead_seconds / max(1, self.validation_images)
        trainer.tail_seconds = (2 + 3 * self.parity_images) * per_image
