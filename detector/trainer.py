"""The training loop: stages of epochs of steps, with hooks called at fixed phases.

A phase calls every hook in `Hook.order` (evaluate, then decide, then save, then the rest), so a hook's place
in the list never changes what it sees. Hooks record metrics and events in the trainer's EventStorage; the
storage hands each event to its writers (event log, TensorBoard, console) in the order they happened.
`state_dict()` is everything a resumed run needs, and the one place that knows the checkpoint's layout.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, LRScheduler, MultiStepLR, SequentialLR
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader

from artdet.detector.architectures import Architecture
from artdet.detector.checkpoint import capture_rng, restore_rng
from artdet.detector.config import TrainConfig
from artdet.detector.distributed import DistContext, reduce_mean
from artdet.detector.errors import ArtdetError
from artdet.detector.events import new_event
from artdet.detector.freezing import configure_trainable, parameter_groups
from artdet.detector.strategy import Stage


class TrainingDivergedError(ArtdetError):
    pass


class EventWriter:
    """Receives every event of a run, in order (rank 0 only)."""

    def write(self, event: dict[str, Any]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class EventStorage:
    """What hooks record during a run (evaluations, the best one, the latest event of each type) and the
    writers that read each event as it is put."""

    def __init__(self, writers: Iterable[EventWriter] = ()):
        self.writers = list(writers)
        self.evaluations: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None
        self.latest: dict[str, dict[str, Any]] = {}

    def put(self, kind: str, **fields: Any) -> dict[str, Any]:
        event = new_event(kind, **fields)
        self.latest[kind] = event
        for writer in self.writers:
            writer.write(event)
        return event

    def add_evaluation(self, record: dict[str, Any]) -> bool:
        """Record one epoch's validation metrics; True if its mAP is the best so far."""
        self.evaluations.append(record)
        improved = self.best is None or record["map"] > self.best["map"]
        if improved:
            self.best = record
        return improved

    def close(self) -> None:
        for writer in self.writers:
            writer.close()

    def state_dict(self) -> dict[str, Any]:
        return {"evaluations": self.evaluations, "best": self.best}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.evaluations, self.best = state["evaluations"], state["best"]


class Hook:
    """Called at the trainer's phases; state that must survive a resume goes through state_dict.

    `order`: EVALUATE hooks run before DECIDE hooks (early stopping), which run before SAVE hooks
    (checkpoints), which run before the rest. `name` keys the hook's state in a checkpoint.
    """

    EVALUATE, DECIDE, SAVE, DEFAULT = 10, 20, 30, 50
    order = DEFAULT

    @property
    def name(self) -> str:
        return type(self).__name__

    def before_train(self, trainer: "Trainer") -> None:
        pass

    def before_stage(self, trainer: "Trainer") -> None:
        pass

    def after_step(self, trainer: "Trainer") -> None:
        pass

    def after_epoch(self, trainer: "Trainer") -> None:
        pass

    def after_stage(self, trainer: "Trainer") -> None:
        pass

    def after_train(self, trainer: "Trainer") -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, total: int) -> LRScheduler:
    """A stage's learning rate over its `total` steps: linear warm-up from 0.1% of the rate (at most half the
    stage), then cosine decay to zero, or a tenth at each milestone (a fraction of the stage)."""
    warmup = min(config.warmup_iters, total // 2)
    if config.schedule == "cosine":
        main: LRScheduler = CosineAnnealingLR(optimizer, T_max=max(1, total - warmup))
    else:
        main = MultiStepLR(optimizer, gamma=0.1,
                           milestones=[max(0, math.ceil(m * total) - warmup) for m in config.step_milestones])
    if not warmup:
        return main
    return SequentialLR(optimizer, [LinearLR(optimizer, start_factor=0.001, total_iters=warmup), main],
                        milestones=[warmup])


def build_optimizer(groups: list[dict[str, Any]], config: TrainConfig) -> torch.optim.Optimizer:
    """An optimiser over parameter groups that carry their own learning rates (freezing.parameter_groups)."""
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, weight_decay=config.weight_decay)
    return torch.optim.SGD(groups, momentum=config.momentum, weight_decay=config.weight_decay)


def _ema_with_warmup(decay: float) -> Callable:
    """torch's EMA update with the decay ramping up as (1 + n) / (10 + n) to `decay` after n updates, so that on
    a short run the average does not lean on the starting weights."""
    def update(averaged, current, num_averaged) -> None:
        n = float(num_averaged)
        get_ema_multi_avg_fn(min(decay, (1 + n) / (10 + n)))(averaged, current, num_averaged)

    return update


@dataclass
class TrainerState:
    stage_index: int = 0
    epoch: int = 0  # next epoch to run within the stage
    iteration: int = 0  # global optimiser steps so far
    stop_stage: bool = False


class Trainer:
    def __init__(self, model: nn.Module, arch: Architecture, config: TrainConfig, stages: list[Stage],
                 loader: DataLoader, ctx: DistContext, hooks: Iterable[Hook], storage: EventStorage | None = None,
                 model_payload: Callable[[nn.Module], dict[str, Any]] | None = None, run: Any = None):
        self.model = model
        self.arch = arch
        self.config = config
        self.stages = stages
        self.loader = loader
        self.ctx = ctx
        self.hooks = sorted(hooks, key=lambda hook: hook.order)
        names = [hook.name for hook in self.hooks]
        if len(set(names)) != len(names):
            raise ValueError(f"hooks need distinct names (their checkpoint keys): {sorted(names)}")
        self.storage = storage or EventStorage()
        self.model_payload = model_payload or (lambda model: {})  # a model's checkpoint file contents
        self.run = run  # the run's record (training.RunRecord); saved with every checkpoint
        self.state = TrainerState()
        # the weights' moving average, which evaluation, best.pt and so the export use (config.ema_decay > 0)
        self.ema = (AveragedModel(model, multi_avg_fn=_ema_with_warmup(config.ema_decay), use_buffers=True)
                    if config.ema_decay else None)
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: LRScheduler | None = None
        self._pending_optimizer_state: dict[str, Any] | None = None
        self.use_amp = config.amp and ctx.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.forward_model: nn.Module = model
        self.step_seconds: float | None = None  # this stage's recent step time (a stage's steps cost differ)
        # what an epoch costs besides its steps (evaluation, checkpoints): the last one measured, or before the
        # first, the caller's estimate (the baseline evaluation's time)
        self.epoch_overhead_seconds = 0.0
        self.tail_seconds = 0.0  # work after the last epoch that the ETA includes (a job's export), set by a hook
        self.data_wait_seconds = 0.0
        self.step_compute_seconds = 0.0

    def _call(self, phase: str) -> None:
        for hook in self.hooks:
            getattr(hook, phase)(self)

    @property
    def stage(self) -> Stage:
        return self.stages[self.state.stage_index]

    @property
    def evaluated_model(self) -> nn.Module:
        """The weights evaluation and checkpoints for export see: the moving average when there is one."""
        return self.ema.module if self.ema is not None else self.model

    @property
    def global_epoch(self) -> int:
        return sum(s.epochs for s in self.stages[: self.state.stage_index]) + self.state.epoch

    def iterations_per_epoch(self) -> int:
        n = len(self.loader)
        return min(n, self.config.max_iters_per_epoch) if self.config.max_iters_per_epoch else n

    def remaining_epochs(self) -> int:
        """Epochs not yet finished, the one running included."""
        return max(0, sum(s.epochs for s in self.stages[self.state.stage_index:]) - self.state.epoch)

    def remaining_iterations(self) -> int:
        return self.remaining_epochs() * self.iterations_per_epoch()

    # stages -------------------------------------------------------------------------------
    def _start_stage(self) -> None:
        stage = self.stage
        configure_trainable(self.model, self.arch, stage.backbone_layers, stage.train_fpn,
                            stage.train_rpn, stage.train_box_head)
        self.optimizer = build_optimizer(parameter_groups(self.model, self.arch, stage.lr, self.config.layer_decay),
                                         self.config)
        self.scheduler = build_scheduler(self.optimizer, self.config, stage.epochs * self.iterations_per_epoch())
        if self._pending_optimizer_state is not None:
            self.optimizer.load_state_dict(self._pending_optimizer_state["optimizer"])
            self.scheduler.load_state_dict(self._pending_optimizer_state["scheduler"])
            self.scaler.load_state_dict(self._pending_optimizer_state["scaler"])
            self._pending_optimizer_state = None
        self.forward_model = self.model
        if self.ctx.distributed:
            # DDP registers its gradient hooks for the parameters that require grad when it is built, and a
            # stage changes which ones do: each stage needs a wrapper of its own.
            device_ids = [self.ctx.device.index] if self.ctx.device.type == "cuda" else None
            self.forward_model = DistributedDataParallel(self.model, device_ids=device_ids)
        self.state.stop_stage = False

    # the loop -----------------------------------------------------------------------------
    def train(self) -> None:
        self._call("before_train")
        self.storage.put("run_started", total_iterations=self.remaining_iterations(),
                         resumed=self.state.iteration > 0)
        while self.state.stage_index < len(self.stages):
            stage = self.stage
            if self.state.epoch < stage.epochs:
                self._start_stage()
                self.storage.put(
                    "stage_started", stage=stage.name, stage_index=self.state.stage_index, epochs=stage.epochs,
                    backbone_layers=stage.backbone_layers, lr=stage.lr,
                    trainable_parameters=sum(p.numel() for p in self.model.parameters() if p.requires_grad))
                self._call("before_stage")
                self.step_seconds = None
                while self.state.epoch < stage.epochs and not self.state.stop_stage:
                    self._run_epoch()
                    self.state.epoch += 1
                    self.storage.put("epoch_finished", stage=stage.name, stage_index=self.state.stage_index,
                                     epoch=self.state.epoch, global_epoch=self.global_epoch)
                    started = time.perf_counter()
                    self._call("after_epoch")
                    self.epoch_overhead_seconds = time.perf_counter() - started
                self._call("after_stage")
            self.state.stage_index += 1
            self.state.epoch = 0
            self.state.stop_stage = False
        self.storage.put("run_finished", iterations=self.state.iteration)
        self._call("after_train")

    def _run_epoch(self) -> None:
        self.model.train()
        self.loader.batch_sampler.set_epoch(self.global_epoch)
        self.loader.dataset.set_epoch(self.global_epoch)
        limit = self.iterations_per_epoch()
        waited = time.perf_counter()
        for step_in_epoch, (images, targets) in enumerate(itertools.islice(self.loader, limit)):
            started = time.perf_counter()
            self.data_wait_seconds += started - waited
            losses = self._step(images, targets)
            waited = time.perf_counter()
            elapsed = waited - started
            self.step_compute_seconds += elapsed
            self.step_seconds = elapsed if self.step_seconds is None else 0.9 * self.step_seconds + 0.1 * elapsed
            self.state.iteration += 1
            remaining = self.remaining_iterations() - (step_in_epoch + 1)
            self.storage.put("step", stage=self.stage.name, stage_index=self.state.stage_index,
                             epoch=self.state.epoch + 1, step=step_in_epoch + 1, steps_per_epoch=limit,
                             iteration=self.state.iteration, losses=losses, lr=self.optimizer.param_groups[0]["lr"],
                             images=len(images),
                             eta_seconds=round(remaining * self.step_seconds + self.tail_seconds
                                               + self.remaining_epochs() * self.epoch_overhead_seconds, 1))
            self._call("after_step")

    def _step(self, images, targets) -> dict[str, float]:
        device = self.ctx.device
        images = [im.to(device, non_blocking=True) for im in images]
        targets = [{"boxes": t["boxes"].to(device), "labels": t["labels"].to(device)} for t in targets]
        with torch.autocast(device_type=device.type, enabled=self.use_amp):
            loss_dict = self.forward_model(images, targets)
            loss = sum(loss_dict.values())
        # every rank logs and checks the mean over ranks, so all of them stop together on a divergence
        values = reduce_mean(self.ctx, {**{k: v.detach() for k, v in loss_dict.items()}, "loss": loss.detach()})
        if not math.isfinite(values["loss"]):
            raise TrainingDivergedError(
                f"loss became {values['loss']} at iteration {self.state.iteration + 1} "
                f"(stage {self.stage.name}, lr {self.optimizer.param_groups[0]['lr']:.3g}): {values}. "
                "Lower --lr or check the annotations")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.config.grad_clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(
                [p for group in self.optimizer.param_groups for p in group["params"]], self.config.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        return values

    # checkpoint ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The model (as `model_payload` describes it), the run's record, and everything that continues the
        run exactly: position, optimiser, scheduler, AMP scaler, storage, hooks, random-number generators."""
        return {
            **self.model_payload(self.model),
            "run": self.run.to_dict() if self.run is not None else None,
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "trainer": {"stage_index": self.state.stage_index, "epoch": self.state.epoch,
                        "iteration": self.state.iteration, "stop_stage": self.state.stop_stage},
            "optimizer_state": {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                                "scaler": self.scaler.state_dict()},
            "storage": self.storage.state_dict(),
            "hooks": {hook.name: hook.state_dict() for hook in self.hooks},
            "rng": capture_rng(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue where `state_dict()` left off: at the next epoch, or at the next stage when the saved
        stage had ended (its last epoch ran, or early stopping ended it)."""
        saved = state["trainer"]
        self.state = TrainerState(saved["stage_index"], saved["epoch"], saved["iteration"])
        if saved["stop_stage"] or self.state.epoch >= self.stages[self.state.stage_index].epochs:
            self.state.stage_index, self.state.epoch = self.state.stage_index + 1, 0
        else:
            self._pending_optimizer_state = state["optimizer_state"]
        self.storage.load_state_dict(state["storage"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        for hook in self.hooks:
            if hook.name in state["hooks"]:
                hook.load_state_dict(state["hooks"][hook.name])
        restore_rng(state["rng"])
