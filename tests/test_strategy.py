"""Strategies: manual stage plans, `auto`'s four cases, and the similarity measures it relies on."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from torchvision.ops.misc import FrozenBatchNorm2d

from artdet.detector.architectures import get_architecture
from artdet.detector.config import TrainConfig
from artdet.detector.dataset import load_coco
from artdet.tools.experiments.scenes import PAINTING_CLASSES, PHOTO_CLASSES, write_scenes
from artdet.detector.similarity import batchnorm_shift_similarity, zero_shot_similarity
from artdet.detector.strategy import decide_auto, manual_plan
from artdet.detector.torch_data import TorchDetectionDataset
from artdet.detector.training import train
from tests.conftest import TINY_ARCH

ARCH = get_architecture(TINY_ARCH)


def test_manual_plans():
    config = TrainConfig(train="x", stage1_epochs=2, stage2_epochs=3, lr=0.02, stage2_lr_factor=0.1)
    head = manual_plan(config, ARCH, "head-only")
    assert [(s.epochs, s.backbone_layers, s.train_fpn) for s in head] == [(5, 0, False)]
    two = manual_plan(config, ARCH, "two-stage")
    # stage 2 trains the whole network (every backbone stage, the FPN, RPN and heads) unless told fewer stages
    assert [(s.name, s.epochs, s.backbone_layers) for s in two] == [("feature-extraction", 2, 0),
                                                                     ("fine-tuning", 3, 6)]
    assert (two[1].train_fpn, two[1].train_rpn, two[1].train_box_head) == (True, True, True)
    assert two[1].lr == pytest.approx(0.002)
    top3 = dataclasses.replace(config, trainable_backbone_layers=3)
    assert [s.backbone_layers for s in manual_plan(top3, ARCH, "two-stage")] == [0, 3]
    full = manual_plan(config, ARCH, "full")
    assert [(s.epochs, s.backbone_layers, s.train_fpn, s.lr) for s in full] == [(5, 6, True, 0.02)]


ZERO_SHOT, SHIFT = "zero-shot AP50", "BatchNorm shift"


@pytest.mark.parametrize("images, similarities, expected", [
    (100, {SHIFT: 0.9}, ("head-only", [0], 0.02)),
    (100, {ZERO_SHOT: 0.9, SHIFT: 0.85}, ("head-only", [0], 0.02)),
    (100, {SHIFT: 0.6}, ("full", [6], 0.002)),
    # the engraving look of the transfer experiment: shapes found zero-shot, early activations far from pretraining
    (100, {ZERO_SHOT: 0.97, SHIFT: 0.04}, ("full", [6], 0.002)),
    (100, {ZERO_SHOT: 0.63, SHIFT: 0.9}, ("full", [6], 0.002)),
    (100, {}, ("full", [6], 0.002)),  # a random start: nothing to be similar to
    (2000, {SHIFT: 0.9}, ("full", [6], 0.002)),
    (2000, {SHIFT: 0.6}, ("full", [6], 0.002)),
])
def test_auto_cases_with_the_calibrated_defaults(images, similarities, expected):
    config = TrainConfig(train="x", stage1_epochs=2, stage2_epochs=4, lr=0.02, stage2_lr_factor=0.1)
    decision = decide_auto(config, ARCH, images, similarities)
    strategy, layers, lr = expected
    assert decision.strategy == strategy
    assert [s.backbone_layers for s in decision.stages] == layers
    assert decision.stages[0].lr == pytest.approx(lr)
    assert sum(s.epochs for s in decision.stages) == 6  # the same budget whatever the choice
    assert decision.measurements["large"] == (images >= 500)
    similar = bool(similarities) and min(similarities.values()) >= 0.8
    assert decision.measurements["similar"] is similar
    assert decision.measurements["similarities"] == similarities
    assert decision.measurements["similarity"] == min(similarities.values(), default=0.0)
    assert len(decision.reasons) == 3
    assert all(source in decision.reasons[1] for source in similarities)  # every measure is named in the reasons


def test_zero_shot_similarity_averages_warm_started_classes():
    baseline = {"per_class_ap50": {"person": 0.6, "horse": 0.2, "unicorn": 0.0}}
    assert zero_shot_similarity(baseline, {"person": "person", "horse": "horse"}) == pytest.approx(0.4)
    assert zero_shot_similarity(baseline, {}) is None


def _calibrate_batchnorm(model, data, layers=8):
    """Set the first `layers` frozen BN statistics to the activations `data` produces (as pretraining would)."""
    norms = [m for m in model.backbone.body.modules() if isinstance(m, FrozenBatchNorm2d)][:layers]
    for norm in norms:
        seen = []
        handle = norm.register_forward_pre_hook(lambda m, i: seen.append(i[0]))
        with torch.no_grad():
            for index in range(len(data)):
                batch, _ = model.transform([data[index][0]])
                model.backbone.body(batch.tensors)
        handle.remove()
        x = torch.cat([s.permute(1, 0, 2, 3).flatten(1) for s in seen], dim=1)
        norm.running_mean.copy_(x.mean(dim=1))
        norm.running_var.copy_(x.var(dim=1))


def test_batchnorm_shift_similarity_separates_photo_and_painting_scenes(tmp_path, torch_home):
    from artdet.detector.models import build_model

    model, _ = build_model(TINY_ARCH, list(PHOTO_CLASSES), "coco", min_size=160, max_size=160)
    model.eval()
    photos = load_coco(write_scenes(tmp_path, "photo", 16, 160, 0, name="photo.json"))
    _calibrate_batchnorm(model, TorchDetectionDataset(photos))  # as if pretrained on photo-like scenes
    unseen_photos = load_coco(write_scenes(tmp_path, "photo", 16, 160, 1, name="photo-unseen.json"))
    paintings = load_coco(write_scenes(tmp_path, "painting", 16, 160, 1, classes=PAINTING_CLASSES,
                                       name="painting.json"))
    same = batchnorm_shift_similarity(model, TorchDetectionDataset(unseen_photos), torch.device("cpu"))
    other = batchnorm_shift_similarity(model, TorchDetectionDataset(paintings), torch.device("cpu"))
    assert other < TrainConfig(train="x").auto_similarity_threshold <= same


def test_auto_run_records_its_decision(tmp_path, torch_home, shapes):
    config = TrainConfig(train=str(shapes["train"]), val=str(shapes["val"]), arch=TINY_ARCH, weights="coco",
                         strategy="auto", stage1_epochs=1, stage2_epochs=1, max_size=128, workers=0,
                         max_iters_per_epoch=1, auto_size_threshold=500)
    summary = train(config, tmp_path / "run", progress=False)
    decision = json.loads((tmp_path / "run" / "metrics.json").read_text())["strategy"]
    assert decision["measurements"]["train_images"] == 8 and decision["measurements"]["large"] is False
    assert "BatchNorm" in decision["measurements"]["similarity_source"]  # no warm-started classes here
    # the similarity recorded is the BN-shift measure of the starting model on the training images
    from artdet.detector.models import build_model

    model, _ = build_model(TINY_ARCH, ["circle", "square"], "coco", min_size=128, max_size=128)
    measured = batchnorm_shift_similarity(model, TorchDetectionDataset(load_coco(shapes["train"]), max_side=128),
                                          torch.device("cpu"))
    assert decision["measurements"]["similarity"] == pytest.approx(measured, rel=1e-4)
    # and the choice follows from it: small + similar -> head only, small + different -> the whole network
    similar = measured >= config.auto_similarity_threshold
    assert decision["measurements"]["similar"] is similar
    assert decision["requested"] == "auto" and decision["strategy"] == ("head-only" if similar else "full")
    assert [s["backbone_layers"] for s in decision["stages"]] == ([0] if similar else [ARCH.num_backbone_stages])
    assert [e["stage"] for e in summary["epochs"]] == [decision["stages"][0]["name"]] * 2  # one stage, 1 + 1 epochs
    assert any("small" in r for r in decision["reasons"])
    assert summary["baseline"]["images"] == 4 and np.isfinite(summary["final"]["map"])
