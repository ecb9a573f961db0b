"""The one typed training configuration; CLI flags, RPC fields and run directories map onto it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

STRATEGIES = ("auto", "head-only", "two-stage", "full")


@dataclass
class AugmentConfig:
    enabled: bool = True
    hflip: float = 0.5
    scale_crop: float = 0.5  # box-safe random crop followed by rescale
    color_jitter: float = 0.5
    grayscale: float = 0.1
    blur: float = 0.1
    jpeg: float = 0.2
    posterize: float = 0.1
    clahe: float = 0.1


@dataclass
class TrainConfig:
    # data
    train: str = ""  # COCO JSON, or a VOC annotation folder
    val: str | None = None  # when absent, a seeded split of `train`
    images: str | None = None  # image root; default: each annotation file's folder
    val_fraction: float = 0.2
    max_size: int | None = None  # longest image side fed to the network; default: the architecture's
    # model
    arch: str = "fasterrcnn_mobilenet_v3_large_320_fpn"
    weights: str = "coco"  # coco | none | path to a torchvision state_dict or an artdet checkpoint
    # strategy and stages
    strategy: str = "two-stage"
    stage1_epochs: int = 3
    stage2_epochs: int = 6
    trainable_backbone_layers: int | None = None  # stage 2; default: the architecture's (torchvision's)
    stage1_train_rpn: bool = True
    stage1_train_box_head: bool = True
    auto_size_threshold: int = 500  # train images; at or above this the dataset counts as large
    auto_similarity_threshold: float = 0.8  # zero-shot AP50 on known classes, or the BN-shift measure
    # optimisation
    optimizer: str = "sgd"  # sgd | adamw
    lr: float = 0.01  # stage 1 (and head-only); SGD for batch 4; AdamW users pick ~1e-4
    stage2_lr_factor: float = 0.1  # stage 2 learning rate = lr * factor
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_iters: int = 50
    schedule: str = "cosine"  # cosine | step
    step_milestones: tuple[float, ...] = (0.67, 0.89)  # fractions of a stage, for `step`
    grad_clip: float = 10.0
    batch_size: int = 4
    workers: int = 2
    aspect_ratio_grouping: bool = True
    amp: bool = True  # used only on CUDA
    device: str = "auto"
    seed: int = 0
    patience: int = 0  # epochs without val mAP gain before a stage ends; 0 disables early stopping
    max_iters_per_epoch: int | None = None  # for quick runs and tests
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # evaluation / export
    eval_score_threshold: float = 0.05
    detections_per_image: int = 100
    # detection-model internals, exposed because they trade speed for recall on small CPUs
    rpn_pre_nms_top_n_train: int | None = None
    rpn_post_nms_top_n_train: int | None = None
    box_batch_size_per_image: int | None = None

    def validate(self) -> None:
        from detector.architectures import ARCHITECTURES

        errors = []
        if self.arch not in ARCHITECTURES:
            errors.append(f"arch: unknown {self.arch!r}; choose from {sorted(ARCHITECTURES)}")
        if self.strategy not in STRATEGIES:
            errors.append(f"strategy: unknown {self.strategy!r}; choose from {list(STRATEGIES)}")
        if self.optimizer not in ("sgd", "adamw"):
            errors.append(f"optimizer: unknown {self.optimizer!r}; choose sgd or adamw")
        if self.schedule not in ("cosine", "step"):
            errors.append(f"schedule: unknown {self.schedule!r}; choose cosine or step")
        for name in ("stage1_epochs", "stage2_epochs", "patience", "warmup_iters"):
            if getattr(self, name) < 0:
                errors.append(f"{name}: must be >= 0")
        if self.stage1_epochs + self.stage2_epochs == 0:
            errors.append("stage1_epochs + stage2_epochs: at least one epoch is needed")
        for name in ("lr", "batch_size"):
            if getattr(self, name) <= 0:
                errors.append(f"{name}: must be > 0")
        if self.max_size is not None and self.max_size < 64:
            errors.append("max_size: must be at least 64 pixels")
        if not self.train:
            errors.append("train: an annotation file is required")
        if errors:
            raise ValueError("invalid training configuration:\n  " + "\n  ".join(errors))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown training configuration keys: {unknown}")
        values = dict(data)
        if isinstance(values.get("augment"), dict):
            values["augment"] = AugmentConfig(**values["augment"])
        if isinstance(values.get("step_milestones"), list):
            values["step_milestones"] = tuple(values["step_milestones"])
        return cls(**values)
