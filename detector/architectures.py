"""The detectors we fine-tune, described by data: builder, COCO weights, backbone stages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torchvision.models import get_model_builder, get_model_weights
from torchvision.models._api import WeightsEnum

from artdet.detector.config import ARCH_NAMES


# The backbone body's children per stage, bottom (generic edges) to top (object parts): the stages
# torchvision's `trainable_backbone_layers` counts from the top. ResNet: the stem, then layer1..layer4.
RESNET_STAGES = (("conv1", "bn1"), ("layer1",), ("layer2",), ("layer3",), ("layer4",))
# MobileNetV3-Large: its 17 feature blocks, split where torchvision marks a block `_is_cn` (2, 4, 7, 13) and
# before the last one.
MOBILENET_V3_LARGE_STAGES = tuple(tuple(str(i) for i in range(start, end))
                                  for start, end in ((0, 2), (2, 4), (4, 7), (7, 13), (13, 16), (16, 17)))


@dataclass(frozen=True)
class Architecture:
    name: str
    builder: Callable
    coco_weights: WeightsEnum
    backbone_stages: tuple[tuple[str, ...], ...]
    min_size: int
    max_size: int

    @property
    def num_backbone_stages(self) -> int:
        """torchvision's range for trainable_backbone_layers."""
        return len(self.backbone_stages)


BACKBONE_STAGES = {"resnet50": RESNET_STAGES, "mobilenet_v3_large": MOBILENET_V3_LARGE_STAGES}


def _architecture(name: str) -> Architecture:
    """torchvision's detector `name` (its builder and COCO weights looked up by that name)."""
    backbone = next(b for b in BACKBONE_STAGES if f"_{b}_" in name)
    low_resolution = "_320_" in name  # torchvision's mobile variant resizes to 320-640 px instead of 800-1333
    return Architecture(name, get_model_builder(name), get_model_weights(name).COCO_V1, BACKBONE_STAGES[backbone],
                        *((320, 640) if low_resolution else (800, 1333)))


ARCHITECTURES: dict[str, Architecture] = {name: _architecture(name) for name in ARCH_NAMES}


def get_architecture(name: str) -> Architecture:
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise ValueError(f"unknown architecture {name!r}; choose from {sorted(ARCHITECTURES)}") from None


def coco_category_names(arch: Architecture) -> list[str]:
    """COCO's 91-entry label list (index = label; '__background__' and 'N/A' fill the gaps)."""
    return list(arch.coco_weights.meta["categories"])
