"""A fine-tuning run end to end: data → model → baseline → strategy → stages → best checkpoint → metrics.json.

Run directory layout:
    config.json                  the TrainConfig (resume reads it back)
    checkpoints/last.pt          model + optimiser + scheduler + stage/epoch + RNG + hook states
    checkpoints/best.pt          the model with the best validation mAP (input to export / retraining)
    metrics.json                 baseline, per-epoch, final, per-class AP, strategy decision, warm start
    events.jsonl                 every training event, one JSON object per line
    tensorboard/                 TensorBoard curves, per-class AP, hparams, the plots as images
    best_evaluation.json         best.pt evaluated again: precision-recall curves, detections on a few val images
    results.png, per_class_ap.png, pr_curves.png, val_predictions.png   plots.py draws them from the files above
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import nn

from artdet.detector.architectures import Architecture, get_architecture
from artdet.detector.augment import build_train_transform
from artdet.detector.checkpoint import load_torch, seed_everything
from artdet.detector.files import save_json
from artdet.detector.coco_eval import evaluate_detections
from artdet.detector.config import SCORE_THRESHOLD, TrainConfig
from artdet.detector.dataset import DetectionDataset
from artdet.detector.distributed import DistContext, broadcast_from_main, init_distributed, shutdown
from artdet.detector.evaluate import evaluate_model, predict
from artdet.detector.events import EVENTS_FILE
from artdet.detector.hooks import BestCheckpointHook, EarlyStoppingHook, EvaluationHook, PeriodicCheckpointHook
from artdet.detector.models import StartingPoint, build_model, checkpoint_payload, model_from_payload, model_kwargs
from artdet.detector.plots import BEST_EVALUATION_FILE, DRAWN_IMAGES, draw_run_plots
from artdet.detector.similarity import batchnorm_shift_similarity, zero_shot_similarity
from artdet.detector.split import split_dataset
from artdet.detector.strategy import StrategyDecision, decide_auto, manual_decision
from artdet.detector.torch_data import TorchDetectionDataset, train_loader
from artdet.detector.trainer import EventStorage, EventWriter, Hook, Trainer
from artdet.detector.writers import ConsoleWriter, EventLogWriter, TensorBoardWriter
from artdet.detector.annotation_formats import load_annotations


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


def _decide(config: TrainConfig, arch: Architecture, model: nn.Module, train: DetectionDataset,
            baseline: dict[str, Any], start: StartingPoint, device: torch.device, max_side: int) -> StrategyDecision:
    if config.strategy != "auto":
        return manual_decision(config, arch)
    similarities = {}
    zero_shot = zero_shot_similarity(baseline, start.warm_started)
    if zero_shot is not None:
        similarities[f"zero-shot AP50 on warm-started classes {sorted(start.warm_started)}"] = zero_shot
    data = TorchDetectionDataset(train, transform=None, max_side=max_side)
    shift = batchnorm_shift_similarity(model, data, device)
    if shift is not None:
        similarities["early backbone activations vs the frozen BatchNorm statistics of pretraining"] = shift
    return decide_auto(config, arch, len(train.images), similarities)


@dataclass
class RunRecord:
    """What a run is, beyond its configuration: saved in every last.pt and summarised in metrics.json."""

    run_id: str
    arch: str
    starting_point: dict[str, Any]  # models.StartingPoint as a dict
    frozen_batchnorm: bool
    baseline: dict[str, Any]  # validation metrics before fine-tuning
    strategy: dict[str, Any]  # strategy.StrategyDecision as a dict
    seconds: float = 0.0  # training time of the sessions before this one (a resumed run adds them up)
    session_started: float = field(default_factory=time.time, repr=False)

    def total_seconds(self) -> float:
        return self.seconds + time.time() - self.session_started

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        del data["session_started"]
        data["seconds"] = round(self.total_seconds(), 1)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], session_started: float) -> "RunRecord":
        return cls(**data, session_started=session_started)


@dataclass
class Run:
    """A run being trained in this process: its pieces, whether started or resumed."""

    config: TrainConfig
    run_dir: Path
    ctx: DistContext
    arch: Architecture
    train_set: DetectionDataset
    val_set: DetectionDataset
    model: nn.Module
    network: dict[str, Any]
    max_side: int
    record: RunRecord | None = None
    checkpoint: dict[str, Any] | None = None  # the last.pt a resumed run continues from
    started: float = 0.0
    evaluation_seconds: float = 0.0  # one evaluation's time, measured on the baseline (the ETA's first estimate)

    def evaluate(self, progress: bool, model: nn.Module | None = None) -> dict[str, Any]:
        return evaluate_model(self.model if model is None else model, self.val_set, self.ctx.device, self.max_side,
                              self.config.workers, progress)


def _prepare(config: TrainConfig, run_dir: Path, ctx: DistContext, checkpoint: dict[str, Any] | None) -> Run:
    started = time.time()
    seed_everything(config.seed + ctx.rank)
    arch = get_architecture(config.arch)
    train_set, val_set = load_datasets(config)
    network = network_kwargs(config, arch)
    model = None if checkpoint is None else model_from_payload(checkpoint, **network)
    return Run(config, run_dir, ctx, arch, train_set, val_set, model, network, config.max_size or arch.max_size,
               checkpoint=checkpoint, started=started)


def start_run(config: TrainConfig, run_dir: Path, ctx: DistContext, progress: bool) -> Run:
    """A new run: the model from its starting weights, the baseline evaluation, the strategy decision."""
    run = _prepare(config, run_dir, ctx, None)
    run.model, start = build_model(config.arch, run.train_set.class_names, config.weights, **run.network)
    run.model.to(ctx.device)
    if ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_json(config.to_dict(), run_dir / "config.json")
    evaluating = time.time()
    baseline = broadcast_from_main(ctx, run.evaluate(progress) if ctx.is_main else None)
    run.evaluation_seconds = time.time() - evaluating
    decision = _decide(config, run.arch, run.model, run.train_set, baseline, start, ctx.device, run.max_side) \
        if ctx.is_main else None
    decision = broadcast_from_main(ctx, decision)
    run.record = RunRecord(run_id=uuid.uuid4().hex[:12], arch=config.arch, starting_point=vars(start),
                           frozen_batchnorm=start.pretrained, baseline=baseline, strategy=decision.to_dict(),
                           session_started=run.started)
    return run


def resume_run(config: TrainConfig, run_dir: Path, ctx: DistContext, checkpoint: dict[str, Any]) -> Run:
    """The run in `run_dir` as its last checkpoint left it."""
    run = _prepare(config, run_dir, ctx, checkpoint)
    run.model.to(ctx.device)
    run.record = RunRecord.from_dict(checkpoint["run"], session_started=run.started)
    return run


def read_run_config(run_dir: Path) -> TrainConfig:
    if not (run_dir / "config.json").is_file():
        raise FileNotFoundError(f"--resume: {run_dir} has no config.json (not a run directory)")
    return TrainConfig.from_dict(json.loads((run_dir / "config.json").read_text()))


def finished_summary(run_dir: Path) -> dict[str, Any] | None:
    """The metrics.json of a run that has finished training, else None."""
    path = run_dir / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else None


def last_checkpoint(run_dir: Path) -> dict[str, Any] | None:
    last = run_dir / "checkpoints" / "last.pt"
    return load_torch(last) if last.is_file() else None


def build_trainer(run: Run, progress: bool, extra_hooks: Iterable[Hook] = ()) -> Trainer:
    """The trainer with the standard hooks, its storage writing to the run directory (rank 0)."""
    config, ctx, record = run.config, run.ctx, run.record
    writers: list[EventWriter] = []
    if ctx.is_main:
        writers = [EventLogWriter(run.run_dir / EVENTS_FILE),
                   TensorBoardWriter(run.run_dir / "tensorboard", hparams=config.to_dict())]
        if progress:
            writers.insert(0, ConsoleWriter())
    storage = EventStorage(writers)
    data = TorchDetectionDataset(run.train_set, build_train_transform(config.augment), run.max_side, config.seed)
    loader = train_loader(data, config.batch_size, config.workers, config.seed, ctx.rank, ctx.world_size,
                          config.aspect_ratio_grouping)

    def model_payload(model: nn.Module) -> dict[str, Any]:
        return checkpoint_payload(model, config.arch, run.train_set.class_names,
                                  category_ids=run.train_set.category_ids, run_id=record.run_id,
                                  frozen_batchnorm=record.frozen_batchnorm, network=run.network,
                                  val_map=(storage.best or {}).get("map"))

    checkpoints = run.run_dir / "checkpoints"
    hooks = [EvaluationHook(lambda model: run.evaluate(progress, model)), EarlyStoppingHook(config.patience),
             BestCheckpointHook(checkpoints / "best.pt"), PeriodicCheckpointHook(checkpoints / "last.pt"),
             *extra_hooks]
    decision = StrategyDecision.from_dict(record.strategy)
    trainer = Trainer(run.model, run.arch, config, decision.stages, loader, ctx, hooks, storage, model_payload,
                      record)
    trainer.epoch_overhead_seconds = run.evaluation_seconds
    if run.checkpoint is None:
        storage.put("run_configured", run_id=record.run_id, arch=config.arch, classes=run.train_set.class_names,
                    train_images=len(run.train_set.images), val_images=len(run.val_set.images),
                    starting_point=record.starting_point, world_size=ctx.world_size, device=str(ctx.device))
        storage.put("baseline", metrics=record.baseline)
        storage.put("strategy", decision=record.strategy)
    else:
        trainer.load_state_dict(run.checkpoint)
        storage.put("resumed", stage_index=trainer.state.stage_index, epoch=trainer.state.epoch,
                    iteration=trainer.state.iteration)
    return trainer


def write_best_evaluation(run: Run) -> None:
    """best_evaluation.json: best.pt evaluated again (into the run's model), with what metrics.json leaves out:
    its precision-recall curves and its detections on the first validation images, as Detect would return them."""
    best = run.run_dir / "checkpoints" / "best.pt"
    if not best.is_file():
        return
    run.model.load_state_dict(load_torch(best)["model"])
    data = TorchDetectionDataset(run.val_set, transform=None, max_side=run.max_side)
    detections = predict(run.model, data, run.ctx.device, run.config.workers)
    drawn = [{"image_id": d.image_id,
              "detections": [{"box": [round(v, 2) for v in box], "score": round(score, 4), "label_id": label}
                             for box, score, label in zip(d.boxes.tolist(), d.scores.tolist(), d.labels.tolist())
                             if score >= SCORE_THRESHOLD]}
             for d in detections[:DRAWN_IMAGES]]
    save_json({"checkpoint": "best.pt", "score_threshold": SCORE_THRESHOLD,
               "metrics": evaluate_detections(run.val_set, detections, pr_curves=True), "predictions": drawn},
              run.run_dir / BEST_EVALUATION_FILE)


def write_plots(run: Run) -> list[str]:
    """The run's plots (the names of those drawn). A failure is reported, not raised: it must not undo a run
    whose checkpoints and metrics.json are written."""
    try:
        write_best_evaluation(run)
        return draw_run_plots(run.run_dir, run.val_set)
    except Exception as exc:  # noqa: BLE001 - whatever broke, the trained model stands
        print(f"artdet: the run's plots were not drawn: {type(exc).__name__}: {exc}", file=sys.stderr)
        return []


def write_summary(run: Run, trainer: Trainer) -> dict[str, Any]:
    """metrics.json (baseline, every epoch's evaluation, the best (final) one, the strategy and timing), then the
    plots, then the summary event (TensorBoard adds the run's hparams and plots on it)."""
    record, storage = run.record, trainer.storage
    best = storage.best or {}
    compute = trainer.data_wait_seconds + trainer.step_compute_seconds
    summary = {
        "run_id": record.run_id,
        "arch": record.arch,
        "class_names": run.train_set.class_names,
        "starting_point": record.starting_point,
        "warm_started_classes": record.starting_point["warm_started"],
        "strategy": record.strategy,
        "baseline": record.baseline,
        "epochs": storage.evaluations,
        "final": best,
        "per_class_ap": best.get("per_class_ap", {}),
        "improvement_map": round(best.get("map", 0.0) - record.baseline["map"], 6) if best else None,
        "timing": {"seconds": round(record.total_seconds(), 1),
                   "data_wait_share": round(trainer.data_wait_seconds / max(1e-9, compute), 4)},
    }
    if run.ctx.is_main:
        save_json(summary, run.run_dir / "metrics.json")
        plots = write_plots(run)
        storage.put("summary", summary={**{k: summary[k] for k in ("run_id", "final", "baseline", "strategy",
                                                                   "improvement_map", "warm_started_classes")},
                                        "plots": plots})
    return summary


def plan_strategy(config: TrainConfig, run_dir: str | Path) -> StrategyDecision:
    """The strategy a new run of `config` would follow (auto measures the baseline for it), without training."""
    config.validate()
    ctx = init_distributed(config.device)
    try:
        return StrategyDecision.from_dict(start_run(config, Path(run_dir), ctx, progress=False).record.strategy)
    finally:
        shutdown(ctx)


def train(config: TrainConfig | None, run_dir: str | Path, resume: bool = False, progress: bool = True,
          extra_hooks: Iterable[Hook] = ()) -> dict[str, Any]:
    """Train (or resume) into `run_dir`; returns the metrics written to metrics.json (on rank 0).

    Resuming a run that has finished changes nothing and returns its metrics."""
    run_dir = Path(run_dir)
    checkpoint = None
    if resume:
        config = read_run_config(run_dir)
        finished = finished_summary(run_dir)
        if finished is not None:
            return finished
        checkpoint = last_checkpoint(run_dir)
    assert config is not None
    config.validate()
    ctx = init_distributed(config.device)
    try:
        if checkpoint is not None:
            run = resume_run(config, run_dir, ctx, checkpoint)
        else:
            run = start_run(config, run_dir, ctx, progress)
        trainer = build_trainer(run, progress, extra_hooks)
        try:
            trainer.train()
            return write_summary(run, trainer)
        finally:
            trainer.storage.close()
    finally:
        shutdown(ctx)
