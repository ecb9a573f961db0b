"""The detectors we fine-tune, described by data: builder, COCO weights, backbone family."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torchvision.models.detection import (
    FasterRCNN_MobileNet_V3_Large_320_FPN_Weights,
    FasterRCNN_MobileNet_V3_Large_FPN_Weights,
    FasterRCNN_ResNet50_FPN_V2_Weights,
    FasterRCNN_ResNet50_FPN_Weights,
    fasterrcnn_mobilenet_v3_large_320_fpn,
    fasterrcnn_mobilenet_v3_large_fpn,
    fasterrcnn_resnet50_fpn,
    fasterrcnn_resnet50_fpn_v2,
)
from torchvision.models._api import WeightsEnum


@dataclass(frozen=True)
class Architecture:
    name: str
    builder: Callable
    coco_weights: WeightsEnum
    family: str  # "resnet" or "mobilenet": how the backbone splits into stages
    num_backbone_stages: int  # torchvision's range for trainable_backbone_layers
    default_trainable_layers: int  # torchvision's default for a pretrained start
    min_size: int
    max_size: int


ARCHITECTURES: dict[str, Architecture] = {
    a.name: a
    for a in (
        Architecture("fasterrcnn_resnet50_fpn", fasterrcnn_resnet50_fpn,
                     FasterRCNN_ResNet50_FPN_Weights.COCO_V1, "resnet", 5, 3, 800, 1333),
        Architecture("fasterrcnn_resnet50_fpn_v2", fasterrcnn_resnet50_fpn_v2,
                     FasterRCNN_ResNet50_FPN_V2_Weights.COCO_V1, "resnet", 5, 3, 800, 1333),
        Architecture("fasterrcnn_mobilenet_v3_large_fpn", fasterrcnn_mobilenet_v3_large_fpn,
                     FasterRCNN_MobileNet_V3_Large_FPN_Weights.COCO_V1, "mobilenet", 6, 3, 800, 1333),
        Architecture("fasterrcnn_mobilenet_v3_large_320_fpn", fasterrcnn_mobilenet_v3_large_320_fpn,
                     FasterRCNN_MobileNet_V3_Large_320_FPN_Weights.COCO_V1, "mobilenet", 6, 3, 320, 640),
    )
}


def get_architecture(name: str) -> Architecture:
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise ValueError(f"unknown architecture {name!r}; choose from {sorted(ARCHITECTURES)}") from None


def coco_category_names(arch: Architecture) -> list[str]:
    """COCO's 91-entry label list (index = label; '__background__' and 'N/A' fill the gaps)."""
    return list(arch.coco_weights.meta["categories"])
