"""A fine-tuning run end to end: data → model → baseline → strategy → stages → best checkpoint → metrics.json.

Run directory layout:
    config.json                  the TrainConfig (resume reads it back)
    checkpoints/last.pt          model + optimiser + scheduler + stage/epoch + RNG + hook states
    checkpoints/best.pt          the model with the best validation mAP (input to export / retraining)
    metrics.json                 baseline, per-epoch, final, per-class AP, strategy decision, warm start
    events.jsonl                 every training event, one JSON object per line
    tensorboard/                 TensorBoard curves
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import nn

from detector.architectures import Architecture, get_architecture
from detector.augment import build_train_transform
from detector.checkpoint import load_torch, restore_rng, seed_everything
from detector.files import save_json
from detector.config import TrainConfig
from detector.dataset import DetectionDataset, load_coco
from detector.distributed import DistContext, broadcast_from_main, init_distributed, shutdown
from detector.evaluate import evaluate_model
from detector.hooks import (CheckpointHook, EarlyStoppingHook, EvaluationHook, EventLogHook, ProgressHook,
                            TensorBoardHook)
from detector.models import StartingPoint, build_model, checkpoint_payload, freeze_batchnorm, model_kwargs
from detector.similarity import batchnorm_shift_similarity, zero_shot_similarity
from detector.split import split_dataset
from detector.strategy import StrategyDecision, decide_auto, manual_decision
from detector.torch_data import TorchDetectionDataset, train_loader
from detector.trainer import Hook, Trainer
from detector.voc import voc_to_coco


def load_annotations(path: str, images: str | None = None, class_names: list[str] | None = None,
                     check_files: bool = True) -> DetectionDataset:
    """A COCO JSON file or a Pascal VOC folder of XML files."""
    source = Path(path)
    if source.is_dir():
        coco, root = voc_to_coco(source, images)
        return load_coco(coco, root, class_names=class_names, check_files=check_files)
    return load_coco(source, images, class_names=class_names, check_files=check_files)


def load_datasets(config: TrainConfig) -> tuple[DetectionDataset, DetectionDataset]:
    train = load_annotations(config.train, config.images)
    if config.val:
        val = load_annotations(config.val, config.images, class_names=train.class_names)
        return train, val
    return split_dataset(train, config.val_fraction, config.seed)


def network_kwargs(config: TrainConfig, arch: Architecture) -> dict[str, Any]:
    return model_kwargs(
        arch, config.max_size,
        box_score_thresh=config.eval_score_threshold,
        box_detections_per_img=config.detections_per_image,
        rpn_pre_nms_top_n_train=config.rpn_pre_nms_top_n_train,
        rpn_post_nms_top_n_train=config.rpn_post_nms_top_n_train,
        box_batch_size_per_image=config.box_batch_size_per_image,
    )


def model_from_payload(payload: dict[str, Any], **kwargs: Any) -> nn.Module:
    """Rebuild a model saved by `checkpoint_payload` without touching any pretrained weights."""
    arch = get_architecture(payload["arch"])
    kwargs = {**payload.get("network", {}), **kwargs}
    model = arch.builder(weights=None, weights_backbone=None, num_classes=len(payload["class_names"]) + 1,
                         **kwargs)
    if payload.get("frozen_batchnorm", True):
        freeze_batchnorm(model)
    model.load_state_dict(payload["model"])
    return model


def _decide(config: TrainConfig, arch: Architecture, model: nn.Module, train: DetectionDataset,
            baseline: dict[str, Any], start: StartingPoint, device: torch.device, max_side: int) -> StrategyDecision:
    if config.strategy != "auto":
        return manual_decision(config, arch)
    similarity = zero_shot_similarity(baseline, start.warm_started)
    source = f"zero-shot AP50 on warm-started classes {sorted(start.warm_started)}"
    if similarity is None:
        data = TorchDetectionDataset(train, transform=None, max_side=max_side)
        similarity = batchnorm_shift_similarity(model, data, device)
        source = "early backbone activations vs the frozen BatchNorm statistics of pretraining"
    if similarity is None:
        similarity, source = 0.0, "no pretrained statistics (random start): treated as different"
    return decide_auto(config, arch, len(train.images), similarity, source)


def _summary(run: dict[str, Any], evaluation: EvaluationHook, class_names: list[str]) -> dict[str, Any]:
    best = evaluation.best or {}
    baseline = run["baseline"]
    return {
        "run_id": run["run_id"],
        "arch": run["arch"],
        "class_names": class_names,
        "starting_point": run["starting_point"],
        "warm_started_classes": run["starting_point"]["warm_started"],
        "strategy": run["strategy"],
        "baseline": baseline,
        "epochs": evaluation.history,
        "final": best,
        "per_class_ap": best.get("per_class_ap", {}),
        "improvement_map": round(best.get("map", 0.0) - baseline["map"], 6) if best else None,
        "timing": run.get("timing", {}),
    }


def train(config: TrainConfig | None, run_dir: str | Path, resume: bool = False, progress: bool = True,
          extra_hooks: Iterable[Hook] = ()) -> dict[str, Any]:
    """Train (or resume) into `run_dir`; returns the metrics written to metrics.json (on rank 0)."""
    run_dir = Path(run_dir)
    checkpoint = None
    if resume:
        if not (run_dir / "config.json").is_file():
            raise FileNotFoundError(f"--resume: {run_dir} has no config.json (not a run directory)")
        config = TrainConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
        last = run_dir / "checkpoints" / "last.pt"
        checkpoint = load_torch(last) if last.is_file() else None
    assert config is not None
    config.validate()
    ctx = init_distributed(config.device)
    try:
        return _train(config, run_dir, checkpoint, ctx, progress, list(extra_hooks))
    finally:
        shutdown(ctx)


def _train(config: TrainConfig, run_dir: Path, checkpoint: dict[str, Any] | None, ctx: DistContext,
           progress: bool, extra_hooks: list[Hook]) -> dict[str, Any]:
    started = time.time()
    seed_everything(config.seed + ctx.rank)
    arch = get_architecture(config.arch)
    train_set, val_set = load_datasets(config)
    kwargs = network_kwargs(config, arch)
    max_side = config.max_size or arch.max_size

    if checkpoint is not None:
        model = model_from_payload(checkpoint, **kwargs)
        run = checkpoint["run"]
    else:
        model, start = build_model(config.arch, train_set.class_names, config.weights, **kwargs)
        run = {"run_id": uuid.uuid4().hex[:12], "arch": config.arch, "starting_point": vars(start),
               "frozen_batchnorm": start.pretrained}
    model.to(ctx.device)

    data = TorchDetectionDataset(train_set, build_train_transform(config.augment), max_side, config.seed)
    loader = train_loader(data, config.batch_size, config.workers, config.seed, ctx.rank, ctx.world_size,
                          config.aspect_ratio_grouping)

    def evaluate() -> dict[str, Any]:
        return evaluate_model(model, val_set, ctx.device, max_side, config.workers, progress)

    evaluation = EvaluationHook(evaluate)

    def model_payload() -> dict[str, Any]:
        return checkpoint_payload(model, config.arch, train_set.class_names,
                                  category_ids=train_set.category_ids, run_id=run["run_id"],
                                  frozen_batchnorm=run["frozen_batchnorm"], network=kwargs,
                                  val_map=(evaluation.best or {}).get("map"))

    hooks: list[Hook] = [
        ProgressHook(progress),
        evaluation,
        EarlyStoppingHook(config.patience),
        CheckpointHook(run_dir / "checkpoints", model_payload, lambda: run),
        TensorBoardHook(run_dir / "tensorboard"),
        EventLogHook(run_dir / "events.jsonl"),
        *extra_hooks,
    ]

    if checkpoint is None:
        if ctx.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            save_json(config.to_dict(), run_dir / "config.json")
        start = StartingPoint(**run["starting_point"])
        baseline = evaluate() if ctx.is_main else None
        baseline = broadcast_from_main(ctx, baseline)
        decision = _decide(config, arch, model, train_set, baseline, start, ctx.device, max_side) \
            if ctx.is_main else None
        decision = broadcast_from_main(ctx, decision)
        run.update(baseline=baseline, strategy=decision.to_dict())
    decision = StrategyDecision.from_dict(run["strategy"])
    trainer = Trainer(model, arch, config, decision.stages, loader, ctx, hooks)

    if checkpoint is None:
        trainer.emit("run_configured", run_id=run["run_id"], arch=config.arch, classes=train_set.class_names,
                     train_images=len(train_set.images), val_images=len(val_set.images),
                     starting_point=run["starting_point"], world_size=ctx.world_size, device=str(ctx.device))
        trainer.emit("baseline", metrics=run["baseline"])
        trainer.emit("strategy", decision=run["strategy"])
    else:
        _restore(trainer, checkpoint)
        trainer.emit("resumed", stage_index=trainer.state.stage_index, epoch=trainer.state.epoch,
                     iteration=trainer.state.iteration)

    trainer.train()
    run["timing"] = {
        "seconds": round(time.time() - started, 1) + run.get("timing", {}).get("seconds", 0.0),
        "data_wait_share": round(trainer.data_wait_seconds
                                 / max(1e-9, trainer.data_wait_seconds + trainer.step_compute_seconds), 4),
    }
    summary = _summary(run, evaluation, train_set.class_names)
    if ctx.is_main:
        save_json(summary, run_dir / "metrics.json")
        trainer.emit("summary", summary={k: summary[k] for k in ("run_id", "final", "baseline", "strategy",
                                                                 "improvement_map", "warm_started_classes")})
    return summary


def _restore(trainer: Trainer, checkpoint: dict[str, Any]) -> None:
    saved = checkpoint["trainer"]
    state = trainer.state
    state.stage_index, state.epoch, state.iteration = saved["stage_index"], saved["epoch"], saved["iteration"]
    finished_stage = saved["stop_stage"] or state.epoch >= trainer.stages[state.stage_index].epochs
    if finished_stage:
        state.stage_index, state.epoch = state.stage_index + 1, 0
    else:
        state.resume_optimizer = checkpoint["optimizer_state"]
    trainer.load_hook_states(checkpoint["hooks"])
    restore_rng(checkpoint["rng"])
