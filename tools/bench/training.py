"""Training speed for one architecture, in its own process so its peak memory is its own:

    python -m artdet.tools.bench.training ARCH --ann TRAIN.json --iters N --max-size S --batch B --workers W

Prints JSON: stage-1 (frozen backbone) and stage-2 (whole network) images/s through our Trainer, the same
through a minimal plain loop, the share of step time spent waiting for data, and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

from artdet.detector.architectures import get_architecture
from artdet.detector.augment import build_train_transform
from artdet.detector.checkpoint import load_torch
from artdet.detector.config import AugmentConfig, TrainConfig
from artdet.detector.dataset import load_coco
from artdet.detector.distributed import DistContext
from artdet.detector.freezing import configure_trainable, parameter_groups
from artdet.detector.images import decode_image
from artdet.detector.strategy import Stage
from artdet.detector.torch_data import TorchDetectionDataset, train_loader
from artdet.detector.trainer import Hook, Trainer, build_optimizer
from artdet.detector.models import model_from_payload
from artdet.tools.bench.models import fabricate_checkpoint


class StepClock(Hook):
    """Wall time and images from the second step on (the first pays for warm-up)."""

    def __init__(self):
        self.started = None
        self.images = 0

    def after_step(self, trainer):
        if trainer.state.iteration == 1:
            self.started = time.perf_counter()
        else:
            self.images += trainer.storage.latest["step"]["images"]

    def after_train(self, trainer):
        self.seconds = time.perf_counter() - self.started


def _trainer_speed(payload, arch, loader, backbone_layers: int, train_fpn: bool, iters: int, config) -> tuple:
    model = model_from_payload(payload)
    clock = StepClock()
    stage = Stage("bench", 1, backbone_layers, train_fpn, config.lr)
    config.max_iters_per_epoch = iters + 1
    trainer = Trainer(model, arch, config, [stage], loader, DistContext(0, 1, 0, torch.device("cpu")), [clock])
    trainer.train()
    total = trainer.data_wait_seconds + trainer.step_compute_seconds
    return clock.images / clock.seconds, trainer.data_wait_seconds / total


def _plain_speed(payload, arch, loader, iters: int, config) -> float:
    model = model_from_payload(payload)
    configure_trainable(model, arch, arch.num_backbone_stages, True)
    optimizer = build_optimizer(parameter_groups(model, arch, config.lr, config.layer_decay), config)
    model.train()
    images_seen, started = 0, None
    for step, (images, targets) in enumerate(loader):
        if step == 1:
            started = time.perf_counter()
        if step > iters:
            break
        losses = model(list(images), [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets])
        loss = sum(losses.values())
        if not torch.isfinite(loss):  # a diverged model proposes fewer boxes and would time as "faster"
            raise RuntimeError(f"plain loop diverged at step {step}; lower the benchmark's learning rate")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step >= 1:
            images_seen += len(images)
    return images_seen / (time.perf_counter() - started)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("arch")
    parser.add_argument("--ann", required=True)
    parser.add_argument("--iters", type=int, default=6)
    parser.add_argument("--max-size", type=int, default=512)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    arch = get_architecture(args.arch)
    dataset = load_coco(args.ann)
    calibration = [decode_image(im.path) for im in dataset.images[:8]]
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = fabricate_checkpoint(args.arch, dataset.class_names, calibration, Path(tmp) / "m.pt",
                                          args.max_size)
        payload = load_torch(checkpoint)
    config = TrainConfig(train=args.ann, arch=args.arch, batch_size=args.batch, workers=args.workers,
                         warmup_iters=0, lr=1e-4, max_size=args.max_size)
    data = TorchDetectionDataset(dataset, build_train_transform(AugmentConfig()), args.max_size, seed=0)
    loader = train_loader(data, args.batch, args.workers, seed=0)
    stage1, _ = _trainer_speed(payload, arch, loader, 0, False, args.iters, config)
    stage2, wait = _trainer_speed(payload, arch, loader, arch.num_backbone_stages, True, args.iters, config)
    plain = _plain_speed(payload, arch, loader, args.iters, config)
    stage2_again, wait_again = _trainer_speed(payload, arch, loader, arch.num_backbone_stages, True, args.iters, config)
    plain_again = _plain_speed(payload, arch, loader, args.iters, config)
    json.dump({
        "train_stage1_img_s": round(stage1, 3),
        "train_stage2_img_s": round((stage2 + stage2_again) / 2, 3),
        "train_plain_loop_img_s": round((plain + plain_again) / 2, 3),
        "train_stage1_speedup": round(stage1 / ((stage2 + stage2_again) / 2), 2),
        "train_data_wait_share": round((wait + wait_again) / 2, 4),
        "train_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "train_settings": {"batch": args.batch, "max_size": args.max_size, "iters": args.iters,
                           "workers": args.workers, "threads": args.threads, "augmentation": "default"},
    }, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
