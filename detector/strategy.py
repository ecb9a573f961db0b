"""Transfer-learning strategy: which layers train in which stage, for how long, and why."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from artdet.detector.architectures import Architecture
from artdet.detector.config import TrainConfig


@dataclass
class Stage:
    name: str  # "feature-extraction" or "fine-tuning"
    epochs: int
    backbone_layers: int  # trainable backbone stages, counted from the top
    train_fpn: bool
    lr: float
    train_rpn: bool = True
    train_box_head: bool = True


@dataclass
class StrategyDecision:
    requested: str
    strategy: str  # the manual strategy applied
    stages: list[Stage]
    reasons: list[str] = field(default_factory=list)
    measurements: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "StrategyDecision":
        return cls(**{**data, "stages": [Stage(**s) for s in data["stages"]]})


def _feature_extraction(config: TrainConfig, epochs: int) -> Stage:
    return Stage("feature-extraction", epochs, 0, False, config.lr,
                 config.stage1_train_rpn, config.stage1_train_box_head)


def _fine_tuning(config: TrainConfig, epochs: int, layers: int, lr: float) -> Stage:
    return Stage("fine-tuning", epochs, layers, True, lr)


def manual_plan(config: TrainConfig, arch: Architecture, strategy: str,
                stage2_layers: int | None = None, stage1_epochs: int | None = None,
                stage2_epochs: int | None = None) -> list[Stage]:
    s1 = config.stage1_epochs if stage1_epochs is None else stage1_epochs
    s2 = config.stage2_epochs if stage2_epochs is None else stage2_epochs
    layers = stage2_layers if stage2_layers is not None else (
        config.trainable_backbone_layers if config.trainable_backbone_layers is not None
        else arch.num_backbone_stages)
    if strategy == "head-only":
        return [_feature_extraction(config, s1 + s2)]
    if strategy == "full":
        return [_fine_tuning(config, s1 + s2, arch.num_backbone_stages, config.lr)]
    if strategy == "two-stage":
        stages = [_feature_extraction(config, s1)] if s1 else []
        if s2:
            stages.append(_fine_tuning(config, s2, layers, config.lr * config.stage2_lr_factor))
        return stages
    raise ValueError(f"unknown strategy {strategy!r}")


def decide_auto(config: TrainConfig, arch: Architecture, num_train_images: int,
                similarities: dict[str, float]) -> StrategyDecision:
    """Size × similarity to the pretraining photos, with the policy `artdet experiment transfer` measured.

    `similarities` maps each measure taken (its description) to its value; the data counts as similar only when
    every measure reaches the threshold, and as different when there is none (a random start)."""
    large = num_train_images >= config.auto_size_threshold
    threshold = config.auto_similarity_threshold
    similar = bool(similarities) and all(value >= threshold for value in similarities.values())
    size_reason = (f"{num_train_images} training images {'>=' if large else '<'} "
                   f"threshold {config.auto_size_threshold}: {'large' if large else 'small'}")
    if similarities:
        measured = "; ".join(f"{value:.3f} {'>=' if value >= threshold else '<'} {threshold} ({source})"
                             for source, value in similarities.items())
        sim_reason = (f"similarity to the pretraining data: {measured}: "
                      f"{'similar (every measure)' if similar else 'different (not every measure says similar)'}")
    else:
        sim_reason = "no similarity measure (random start, no pretrained statistics): treated as different"
    lowest = min(similarities, key=similarities.get) if similarities else None
    measurements = {"train_images": num_train_images, "large": large,
                    "similarity": similarities[lowest] if lowest else 0.0, "similarity_source": lowest or "none",
                    "similarities": dict(similarities), "similar": similar}
    if not large and similar:
        strategy, stages = "head-only", manual_plan(config, arch, "head-only")
        why = ("small and similar: the pretrained features already fit; train only the heads "
               "(as accurate as fine-tuning more in the measured cell, and the fastest)")
    else:
        fine_tuning_rate = dataclasses.replace(config, lr=config.lr * config.stage2_lr_factor)
        strategy, stages = "full", manual_plan(fine_tuning_rate, arch, "full")
        kind = ("large" if large else "small") + (" and similar" if similar else " and different")
        why = (f"{kind}: fine-tune the whole network from the pretrained weights at lr × stage2_lr_factor "
               f"= {stages[0].lr:g} (the measured best in this case)")
    return StrategyDecision("auto", strategy, stages, [size_reason, sim_reason, why], measurements)


def manual_decision(config: TrainConfig, arch: Architecture) -> StrategyDecision:
    return StrategyDecision(config.strategy, config.strategy, manual_plan(config, arch, config.strategy),
                            [f"strategy {config.strategy!r} chosen by the user"])
