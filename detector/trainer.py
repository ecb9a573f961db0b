"""The training loop: stages of epochs of steps. Everything else (evaluation, checkpoints, early stopping,
progress, TensorBoard, event logs) is a hook reacting to the events the loop emits."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from detector.architectures import Architecture
from detector.config import TrainConfig
from detector.distributed import DistContext
from detector.errors import ArtdetError
from detector.freezing import configure_trainable
from detector.strategy import Stage


class TrainingDivergedError(ArtdetError):
    pass


class Hook:
    """Reacts to trainer events; state that must survive a resume goes through state_dict."""

    def on_event(self, trainer: "Trainer", event: dict[str, Any]) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def lr_factor(step: int, total: int, warmup: int, schedule: str, milestones: tuple[float, ...]) -> float:
    """Linear warm-up, then cosine decay to zero or x0.1 steps at the given fractions of the stage."""
    if warmup and step < warmup:
        return 0.001 + (1 - 0.001) * step / warmup
    if schedule == "cosine":
        span = max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / span)))
    return 0.1 ** sum(step >= m * total for m in milestones)


def build_optimizer(params: list[nn.Parameter], config: TrainConfig, lr: float) -> torch.optim.Optimizer:
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(params, lr=lr, momentum=config.momentum, weight_decay=config.weight_decay)


@dataclass
class TrainerState:
    stage_index: int = 0
    epoch: int = 0  # next epoch to run within the stage
    iteration: int = 0  # global optimiser steps so far
    stop_stage: bool = False
    resume_optimizer: dict[str, Any] | None = None  # loaded into the stage's optimiser when it starts
    extra: dict[str, Any] = field(default_factory=dict)


class Trainer:
    def __init__(self, model: nn.Module, arch: Architecture, config: TrainConfig, stages: list[Stage],
                 loader: DataLoader, ctx: DistContext, hooks: list[Hook]):
        self.model = model
        self.arch = arch
        self.config = config
        self.stages = stages
        self.loader = loader
        self.ctx = ctx
        self.hooks = hooks
        self.state = TrainerState()
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: torch.optim.lr_scheduler.LambdaLR | None = None
        self.use_amp = config.amp and ctx.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.forward_model: nn.Module = model
        self.step_seconds: float | None = None
        self.data_wait_seconds = 0.0
        self.step_compute_seconds = 0.0

    # events -------------------------------------------------------------------------------
    def emit(self, kind: str, **payload: Any) -> None:
        event = {"type": kind, "time": time.time(), **payload}
        for hook in self.hooks:
            hook.on_event(self, event)

    @property
    def stage(self) -> Stage:
        return self.stages[self.state.stage_index]

    @property
    def global_epoch(self) -> int:
        return sum(s.epochs for s in self.stages[: self.state.stage_index]) + self.state.epoch

    def iterations_per_epoch(self) -> int:
        n = len(self.loader)
        return min(n, self.config.max_iters_per_epoch) if self.config.max_iters_per_epoch else n

    def remaining_iterations(self) -> int:
        per_epoch = self.iterations_per_epoch()
        left = sum(s.epochs for s in self.stages[self.state.stage_index:]) - self.state.epoch
        return max(0, left * per_epoch)

    # stages -------------------------------------------------------------------------------
    def _start_stage(self) -> None:
        stage = self.stage
        configure_trainable(self.model, self.arch, stage.backbone_layers, stage.train_fpn,
                            stage.train_rpn, stage.train_box_head)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(params, self.config, stage.lr)
        total = stage.epochs * self.iterations_per_epoch()
        warmup = min(self.config.warmup_iters, total // 2)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda step: lr_factor(step, total, warmup, self.config.schedule, self.config.step_milestones),
        )
        if self.state.resume_optimizer is not None:
            self.optimizer.load_state_dict(self.state.resume_optimizer["optimizer"])
            self.scheduler.load_state_dict(self.state.resume_optimizer["scheduler"])
            self.scaler.load_state_dict(self.state.resume_optimizer["scaler"])
            self.state.resume_optimizer = None
        self.forward_model = self.model
        if self.ctx.distributed:
            device_ids = [self.ctx.device.index] if self.ctx.device.type == "cuda" else None
            self.forward_model = DistributedDataParallel(self.model, device_ids=device_ids)
        self.state.stop_stage = False

    def optimizer_state(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict()}

    # the loop -----------------------------------------------------------------------------
    def train(self) -> None:
        self.emit("run_started", total_iterations=self.remaining_iterations(), resumed=self.state.iteration > 0)
        while self.state.stage_index < len(self.stages):
            stage = self.stage
            if self.state.epoch < stage.epochs:
                self._start_stage()
                self.emit("stage_started", stage=stage.name, stage_index=self.state.stage_index,
                          epochs=stage.epochs, backbone_layers=stage.backbone_layers, lr=stage.lr,
                          trainable_parameters=sum(p.numel() for p in self.model.parameters() if p.requires_grad))
            while self.state.epoch < stage.epochs and not self.state.stop_stage:
                self._run_epoch()
                self.state.epoch += 1
                self.emit("epoch_finished", stage=stage.name, stage_index=self.state.stage_index,
                          epoch=self.state.epoch, global_epoch=self.global_epoch)
            self.state.stage_index += 1
            self.state.epoch = 0
            self.state.stop_stage = False
        self.emit("run_finished", iterations=self.state.iteration)

    def _run_epoch(self) -> None:
        self.model.train()
        self.loader.batch_sampler.set_epoch(self.global_epoch)
        self.loader.dataset.set_epoch(self.global_epoch)
        limit = self.iterations_per_epoch()
        waited = time.perf_counter()
        for step_in_epoch, (images, targets) in enumerate(self.loader):
            if step_in_epoch >= limit:
                break
            started = time.perf_counter()
            self.data_wait_seconds += started - waited
            losses = self._step(images, targets)
            waited = time.perf_counter()
            elapsed = waited - started
            self.step_compute_seconds += elapsed
            self.step_seconds = elapsed if self.step_seconds is None else 0.9 * self.step_seconds + 0.1 * elapsed
            self.state.iteration += 1
            remaining = self.remaining_iterations() - (step_in_epoch + 1)
            self.emit("step", stage=self.stage.name, stage_index=self.state.stage_index,
                      epoch=self.state.epoch + 1, step=step_in_epoch + 1, steps_per_epoch=limit,
                      iteration=self.state.iteration, losses=losses, lr=self.optimizer.param_groups[0]["lr"],
                      images=len(images), eta_seconds=round(remaining * self.step_seconds, 1))

    def _step(self, images, targets) -> dict[str, float]:
        device = self.ctx.device
        images = [im.to(device, non_blocking=True) for im in images]
        targets = [{"boxes": t["boxes"].to(device), "labels": t["labels"].to(device)} for t in targets]
        with torch.autocast(device_type=device.type, enabled=self.use_amp):
            loss_dict = self.forward_model(images, targets)
            loss = sum(loss_dict.values())
        values = {k: float(v.detach()) for k, v in loss_dict.items()}
        values["loss"] = float(loss.detach())
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
        return values

    # resume ---------------------------------------------------------------------------------
    def hook_states(self) -> dict[str, Any]:
        return {type(h).__name__: h.state_dict() for h in self.hooks}

    def load_hook_states(self, states: dict[str, Any]) -> None:
        for hook in self.hooks:
            if type(hook).__name__ in states:
                hook.load_state_dict(states[type(hook).__name__])

