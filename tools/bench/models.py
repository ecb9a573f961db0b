"""Models for benchmarks: random weights with BatchNorm statistics calibrated on real images, so
activations stay in range (raw random statistics make resnet50 overflow), then frozen as after COCO."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from artdet.detector.architectures import get_architecture
from artdet.detector.export import export_onnx
from artdet.detector.checkpoint import save_torch
from artdet.detector.models import checkpoint_payload, freeze_batchnorm
from artdet.detector.torch_data import to_tensor


def fabricate_checkpoint(arch_name: str, class_names: list[str], images: list[np.ndarray], out: Path,
                         max_size: int, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    arch = get_architecture(arch_name)
    network = {"min_size": min(arch.min_size, max_size), "max_size": max_size}
    model = arch.builder(weights=None, weights_backbone=None, num_classes=len(class_names) + 1, **network)
    model.train()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.momentum = None  # cumulative average over the calibration images
        batch, _ = model.transform([to_tensor(im) for im in images])
        model.backbone(batch.tensors)
    freeze_batchnorm(model)
    save_torch(checkpoint_payload(model, arch_name, class_names, network=network, run_id="bench",
                                  frozen_batchnorm=True), out)
    return out


def fabricate_onnx(arch_name: str, class_names: list[str], images: list[np.ndarray], folder: Path,
                   max_size: int) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    checkpoint = fabricate_checkpoint(arch_name, class_names, images, folder / "model.pt", max_size)
    onnx_path = folder / "model.onnx"
    export_onnx(checkpoint, onnx_path, None, check=False)
    return checkpoint, onnx_path
