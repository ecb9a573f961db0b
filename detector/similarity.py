"""How close a dataset looks to what the starting model was trained on.

Two measures: the starting model's zero-shot AP50 on classes it already knows (when there are any),
else the shift of early backbone activations from the statistics its frozen BatchNorm layers
remember from pretraining (no reference images needed).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from artdet.detector.torch_data import TorchDetectionDataset

# A mean divergence of KL_SCALE nats per channel reads as similarity 1/e. Measured with the transfer
# experiment's domain-A detector: domain A 0.018 nats, B-similar 0.073, B-painting 0.100; this scale puts the
# default threshold 0.8 midway between B-similar (0.83) and B-painting (0.77).
KL_SCALE = 0.39


def zero_shot_similarity(baseline: dict[str, Any], warm_started: dict[str, str]) -> float | None:
    values = [baseline["per_class_ap50"].get(name) for name in warm_started]
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


@torch.inference_mode()
def batchnorm_shift_similarity(model: nn.Module, data: TorchDetectionDataset, device: torch.device,
                               max_images: int = 32, layers: int = 8) -> float | None:
    """exp(-mean KL / KL_SCALE) between the activations entering the first `layers` frozen BN layers and their stats."""
    norms = [m for m in model.backbone.body.modules() if isinstance(m, FrozenBatchNorm2d)][:layers]
    if not norms:
        return None
    sums: dict[int, list[torch.Tensor]] = {i: [] for i in range(len(norms))}

    def hook(index):
        def record(_module, inputs):
            x = inputs[0].float()
            sums[index].append(torch.stack([x.mean(dim=(0, 2, 3)), (x * x).mean(dim=(0, 2, 3))]))
        return record

    handles = [norm.register_forward_pre_hook(hook(i)) for i, norm in enumerate(norms)]
    try:
        model.eval()
        transform = model.transform
        for index in range(min(max_images, len(data))):
            image, _ = data[index]
            batch, _ = transform([image.to(device)])
            model.backbone.body(batch.tensors)
    finally:
        for handle in handles:
            handle.remove()
    divergences = []
    for i, norm in enumerate(norms):
        moments = torch.stack(sums[i]).mean(dim=0)
        mean, var = moments[0], (moments[1] - moments[0] ** 2).clamp_min(1e-6)
        ref_mean, ref_var = norm.running_mean.float(), norm.running_var.float().clamp_min(1e-6)
        kl = 0.5 * ((var + (mean - ref_mean) ** 2) / ref_var - 1 + torch.log(ref_var / var))
        divergences.append(float(kl.mean()))
    return math.exp(-sum(divergences) / len(divergences) / KL_SCALE)
