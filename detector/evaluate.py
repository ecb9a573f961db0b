"""Run a PyTorch detector over a dataset and score it with pycocotools."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from artdet.detector.coco_eval import ImageDetections, evaluate_detections
from artdet.detector.dataset import DetectionDataset
from artdet.detector.torch_data import TorchDetectionDataset, eval_loader


@torch.inference_mode()
def predict(model: nn.Module, dataset: TorchDetectionDataset, device: torch.device, workers: int = 0,
            progress: bool = False, description: str = "eval") -> list[ImageDetections]:
    model.eval()
    detections: list[ImageDetections] = []
    loader = eval_loader(dataset, workers)
    for images, targets in tqdm(loader, desc=description, disable=not progress, leave=False):
        outputs = model([im.to(device, non_blocking=True) for im in images])
        for output, target in zip(outputs, targets):
            detections.append(ImageDetections(
                image_id=target["image_id"],
                boxes=output["boxes"].float().cpu().numpy() / target["scale"],
                scores=output["scores"].float().cpu().numpy(),
                labels=output["labels"].cpu().numpy().astype(np.int64),
            ))
    return detections


def evaluate_model(model: nn.Module, dataset: DetectionDataset, device: torch.device, max_side: int | None,
                   workers: int = 0, progress: bool = False, description: str = "eval") -> dict[str, Any]:
    data = TorchDetectionDataset(dataset, transform=None, max_side=max_side)
    return evaluate_detections(dataset, predict(model, data, device, workers, progress, description))
