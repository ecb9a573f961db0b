"""Build a Faster R-CNN for a dataset's classes from COCO weights, a weights file, or an earlier run."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.ops.misc import FrozenBatchNorm2d

from artdet.detector.architectures import Architecture, coco_category_names, get_architecture
from artdet.detector.errors import InvalidArgument, Unavailable

CHECKPOINT_FORMAT = "artdet-model-v1"

# Names artworks' annotators use for things COCO knows under another name.
COCO_SYNONYMS = {
    "person": ["man", "woman", "child", "boy", "girl", "baby", "infant", "figure", "people", "human", "lady",
               "gentleman", "saint", "angel", "putto", "soldier", "king", "queen", "monk", "nun", "knight"],
    "boat": ["ship", "vessel", "sailboat", "gondola", "barge"],
    "dog": ["hound", "puppy"],
    "horse": ["pony", "steed", "mare", "stallion"],
    "cow": ["cattle", "ox", "bull", "calf"],
    "bird": ["dove", "swan", "eagle", "parrot", "duck", "goose"],
    "vase": ["jug", "urn", "amphora", "pot"],
    "couch": ["sofa", "settee"],
    "dining table": ["table"],
    "potted plant": ["plant"],
    "wine glass": ["goblet", "glass"],
    "cup": ["chalice", "mug"],
}


class WeightsUnavailableError(Unavailable):
    pass


class IncompatibleWeightsError(InvalidArgument):
    pass


@dataclass
class StartingPoint:
    """What a model was initialised from, for the run's results."""

    source: str  # "coco", "none", or a file path
    kind: str  # "coco" | "random" | "state_dict" | "checkpoint"
    warm_started: dict[str, str] = field(default_factory=dict)  # our class -> source class
    pretrained: bool = True


def coco_cache_path(arch: Architecture) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(arch.coco_weights.url)


def load_coco_state(arch: Architecture) -> dict[str, torch.Tensor]:
    try:
        return arch.coco_weights.get_state_dict(progress=True, check_hash=True)
    except (OSError, RuntimeError) as exc:
        name = os.path.basename(arch.coco_weights.url)
        raise WeightsUnavailableError(
            f"COCO weights for {arch.name} ({name}) are not in the torch hub cache and could not be downloaded "
            f"({type(exc).__name__}). Fetch them where there is internet (python -m artdet.tools.fetch_weights) "
            "and copy "
            f"{name} into $TORCH_HOME/hub/checkpoints/ on the machine that trains (for `artdet jobs start`: the "
            f"server's; this one looked for {coco_cache_path(arch)}); or start from a weights file "
            f"(artdet train --weights PATH) or a registered model (artdet jobs start --base-model NAME)"
        ) from exc


def load_checkpoint_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise WeightsUnavailableError(f"weights file not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise IncompatibleWeightsError(f"{path}: not a PyTorch weights file ({exc})") from exc
    if not isinstance(payload, dict):
        raise IncompatibleWeightsError(f"{path}: expected a state_dict or an artdet checkpoint")
    return payload


def _state_and_names(payload: dict[str, Any], arch: Architecture, path: str):
    """Split a weights file into (state_dict, class names incl. background, kind)."""
    if payload.get("format") == CHECKPOINT_FORMAT:
        if payload["arch"] != arch.name:
            raise IncompatibleWeightsError(f"{path}: checkpoint is for {payload['arch']}, not {arch.name}")
        return payload["model"], ["__background__", *payload["class_names"]], "checkpoint"
    state = payload.get("model", payload)  # torchvision's reference scripts wrap it in {"model": ...}
    key = "roi_heads.box_predictor.cls_score.weight"
    if key not in state:
        raise IncompatibleWeightsError(f"{path}: no Faster R-CNN box predictor ({key}) in the state_dict")
    num = state[key].shape[0]
    names = coco_category_names(arch) if num == 91 else [f"class_{i}" for i in range(num)]
    return state, names, "state_dict"


def _source_index(name: str, source_names: list[str]) -> tuple[int, str] | None:
    lowered = {n.lower(): i for i, n in enumerate(source_names) if i > 0 and n not in ("N/A", "__background__")}
    key = name.strip().lower()
    if key in lowered:
        return lowered[key], source_names[lowered[key]]
    for coco_name, synonyms in COCO_SYNONYMS.items():
        if key in synonyms and coco_name in lowered:
            return lowered[coco_name], source_names[lowered[coco_name]]
    return None


def replace_predictor(model: nn.Module, class_names: list[str], source_names: list[str]) -> dict[str, str]:
    """New box predictor for `class_names` (+ background); copy rows of matching source classes."""
    old: FastRCNNPredictor = model.roi_heads.box_predictor
    if [n.lower() for n in source_names[1:]] == [n.lower() for n in class_names]:
        return {n: n for n in class_names}
    new = FastRCNNPredictor(old.cls_score.in_features, len(class_names) + 1)
    warm: dict[str, str] = {}
    with torch.no_grad():
        pairs = [(0, 0)]
        for index, name in enumerate(class_names, start=1):
            match = _source_index(name, source_names)
            if match is not None:
                pairs.append((index, match[0]))
                warm[name] = match[1]
        for dst, src in pairs:
            new.cls_score.weight[dst] = old.cls_score.weight[src]
            new.cls_score.bias[dst] = old.cls_score.bias[src]
            new.bbox_pred.weight[4 * dst:4 * dst + 4] = old.bbox_pred.weight[4 * src:4 * src + 4]
            new.bbox_pred.bias[4 * dst:4 * dst + 4] = old.bbox_pred.bias[4 * src:4 * src + 4]
    model.roi_heads.box_predictor = new
    return warm


def freeze_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm2d by FrozenBatchNorm2d holding the same statistics and affine terms."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            with torch.no_grad():
                if child.affine:
                    frozen.weight.copy_(child.weight)
                    frozen.bias.copy_(child.bias)
                if child.track_running_stats:
                    frozen.running_mean.copy_(child.running_mean)
                    frozen.running_var.copy_(child.running_var)
            setattr(module, name, frozen)
        else:
            freeze_batchnorm(child)
    return module


def model_kwargs(arch: Architecture, max_size: int | None = None, **overrides: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if max_size is not None:
        kwargs.update(min_size=min(arch.min_size, max_size), max_size=max_size)
    kwargs.update({k: v for k, v in overrides.items() if v is not None})
    return kwargs


def build_model(
    arch_name: str,
    class_names: list[str],
    weights: str = "coco",
    **kwargs: Any,
) -> tuple[nn.Module, StartingPoint]:
    """A detector for `class_names` initialised from `weights` ("coco", "none" or a file).

    Every pretrained start keeps BatchNorm frozen, as torchvision does for its COCO weights.
    """
    arch = get_architecture(arch_name)
    if weights == "none":
        model = arch.builder(weights=None, weights_backbone=None, num_classes=len(class_names) + 1, **kwargs)
        return model, StartingPoint("none", "random", pretrained=False)

    if weights == "coco":
        state, source_names, kind = load_coco_state(arch), coco_category_names(arch), "coco"
    else:
        state, source_names, kind = _state_and_names(load_checkpoint_file(weights), arch, weights)
    model = arch.builder(weights=None, weights_backbone=None, num_classes=len(source_names), **kwargs)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise IncompatibleWeightsError(f"weights {weights!r} do not fit {arch.name}: {str(exc)[:500]}") from exc
    freeze_batchnorm(model)
    warm = replace_predictor(model, class_names, source_names)
    return model, StartingPoint(weights, kind, warm)


def checkpoint_payload(model: nn.Module, arch_name: str, class_names: list[str], **extra: Any) -> dict[str, Any]:
    """A self-describing model file that `--weights PATH` and export accept."""
    unwrapped = getattr(model, "module", model)
    return {
        "format": CHECKPOINT_FORMAT,
        "arch": arch_name,
        "class_names": list(class_names),
        "model": {k: v.detach().cpu() for k, v in unwrapped.state_dict().items()},
        **extra,
    }


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
