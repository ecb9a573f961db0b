"""Which parts of a detector train: backbone stages (torchvision's `trainable_backbone_layers`), FPN, heads."""

from __future__ import annotations

from torch import nn

from artdet.detector.architectures import Architecture


def backbone_stages(model: nn.Module, arch: Architecture) -> list[list[nn.Module]]:
    """The backbone body split into stages, bottom (generic edges) to top (object parts)."""
    body = model.backbone.body
    return [[body.get_submodule(name) for name in stage] for stage in arch.backbone_stages]


def _set(modules: list[nn.Module], trainable: bool) -> None:
    for module in modules:
        for parameter in module.parameters():
            parameter.requires_grad_(trainable)


def configure_trainable(
    model: nn.Module,
    arch: Architecture,
    backbone_layers: int,
    train_fpn: bool,
    train_rpn: bool = True,
    train_box_head: bool = True,
) -> None:
    """Freeze or unfreeze in place; the box predictor always trains.

    `backbone_layers` counts stages from the top, as torchvision does (0 = whole body frozen).
    """
    stages = backbone_stages(model, arch)
    if not 0 <= backbone_layers <= len(stages):
        raise ValueError(f"trainable backbone layers for {arch.name} must be in [0, {len(stages)}], "
                         f"got {backbone_layers}")
    _set([model.backbone.body], False)
    if backbone_layers:
        _set([m for stage in stages[-backbone_layers:] for m in stage], True)
    _set([model.backbone.fpn], train_fpn)
    _set([model.rpn], train_rpn)
    _set([model.roi_heads.box_head], train_box_head)
    _set([model.roi_heads.box_predictor], True)


def parameter_groups(model: nn.Module, arch: Architecture, lr: float, layer_decay: float) -> list[dict]:
    """The trainable parameters as optimiser groups: the heads, RPN and FPN at `lr`, backbone stage k from the top
    (1 = the top stage) at lr × layer_decay^k. One group when layer_decay is 1. Empty groups are left out."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    if layer_decay == 1.0:
        return [{"params": trainable, "lr": lr}]
    depth: dict[int, int] = {}
    for k, stage in enumerate(reversed(backbone_stages(model, arch)), start=1):
        for module in stage:
            depth.update({id(p): k for p in module.parameters()})
    groups: dict[int, list[nn.Parameter]] = {}
    for parameter in trainable:
        groups.setdefault(depth.get(id(parameter), 0), []).append(parameter)
    return [{"params": groups[k], "lr": lr * layer_decay ** k} for k in sorted(groups)]
