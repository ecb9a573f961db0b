"""Starting points: COCO weights from the TORCH_HOME cache, weight files, earlier runs; warm start; frozen BN."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from artdet.detector.architectures import ARCHITECTURES, coco_category_names, get_architecture
from artdet.detector.freezing import backbone_stages, configure_trainable
from artdet.detector.models import (IncompatibleWeightsError, WeightsUnavailableError, build_model, checkpoint_payload,
                                    coco_cache_path)
from tests.conftest import TINY_ARCH


def _batchnorms(model: nn.Module) -> tuple[int, int]:
    frozen = sum(isinstance(m, FrozenBatchNorm2d) for m in model.modules())
    trainable = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    return frozen, trainable


def test_coco_weights_come_from_the_torch_home_cache_and_warm_start_person(torch_home):
    arch = get_architecture(TINY_ARCH)
    assert coco_cache_path(arch).is_file()
    cached = torch.load(coco_cache_path(arch), weights_only=True)
    model, start = build_model(TINY_ARCH, ["Woman", "unicorn", "ship"], "coco")
    assert start.kind == "coco"
    assert start.warm_started == {"Woman": "person", "ship": "boat"}
    person = coco_category_names(arch).index("person")
    boat = coco_category_names(arch).index("boat")
    predictor = model.roi_heads.box_predictor
    assert predictor.cls_score.out_features == 4
    assert torch.equal(predictor.cls_score.weight[1], cached["roi_heads.box_predictor.cls_score.weight"][person])
    assert torch.equal(predictor.cls_score.weight[3], cached["roi_heads.box_predictor.cls_score.weight"][boat])
    assert torch.equal(predictor.bbox_pred.weight[4:8],
                       cached["roi_heads.box_predictor.bbox_pred.weight"][4 * person:4 * person + 4])
    assert torch.equal(predictor.cls_score.bias[0], cached["roi_heads.box_predictor.cls_score.bias"][0])
    assert torch.equal(model.backbone.body["0"][0].weight, cached["backbone.body.0.0.weight"])
    assert _batchnorms(model)[1] == 0


def test_missing_coco_weights_offline_name_the_cache_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr("torch.hub.download_url_to_file", offline)
    arch = get_architecture(TINY_ARCH)
    with pytest.raises(WeightsUnavailableError) as caught:
        build_model(TINY_ARCH, ["person"], "coco")
    assert str(coco_cache_path(arch)) in str(caught.value) and "--weights PATH" in str(caught.value)
    # the server path too: where the server looks, and a registered model as the other way to start
    assert "$TORCH_HOME/hub/checkpoints/ on the machine that trains" in str(caught.value)
    assert "the server's" in str(caught.value) and "--base-model NAME" in str(caught.value)


def test_weights_file_and_retraining_keep_batchnorm_frozen(tmp_path, torch_home):
    arch = get_architecture(TINY_ARCH)
    # a user's file saved from a model built without weights: ordinary, trainable BatchNorm
    plain = arch.builder(weights=None, weights_backbone=None, num_classes=91)
    assert _batchnorms(plain)[1] > 0
    torch.save({"model": plain.state_dict()}, tmp_path / "user.pth")
    model, start = build_model(TINY_ARCH, ["person"], str(tmp_path / "user.pth"))
    assert start.kind == "state_dict" and start.warm_started == {"person": "person"}
    assert _batchnorms(model)[1] == 0 and _batchnorms(model)[0] > 0

    torch.save(checkpoint_payload(model, TINY_ARCH, ["person"]), tmp_path / "run.pt")
    again, start = build_model(TINY_ARCH, ["person", "horse"], str(tmp_path / "run.pt"))
    assert start.kind == "checkpoint" and start.warm_started == {"person": "person"}
    assert _batchnorms(again)[1] == 0
    assert torch.equal(again.roi_heads.box_predictor.cls_score.weight[1],
                       model.roi_heads.box_predictor.cls_score.weight[1])
    # after model.train() the statistics still cannot move
    again.train()
    before = {k: v.clone() for k, v in again.state_dict().items() if "running" in k}
    with torch.no_grad():
        again.backbone(torch.rand(1, 3, 64, 64))
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in before.items())


def test_incompatible_weights_are_refused(tmp_path, torch_home):
    torch.save({"something": torch.zeros(3)}, tmp_path / "junk.pth")
    with pytest.raises(IncompatibleWeightsError, match="no Faster R-CNN box predictor"):
        build_model(TINY_ARCH, ["person"], str(tmp_path / "junk.pth"))
    (tmp_path / "text.pth").write_text("hello")
    with pytest.raises(IncompatibleWeightsError, match="not a PyTorch weights file"):
        build_model(TINY_ARCH, ["person"], str(tmp_path / "text.pth"))
    model, _ = build_model(TINY_ARCH, ["person"], "coco")
    torch.save(checkpoint_payload(model, TINY_ARCH, ["person"]), tmp_path / "mobile.pt")
    with pytest.raises(IncompatibleWeightsError, match="is for fasterrcnn_mobilenet_v3_large_320_fpn"):
        build_model("fasterrcnn_mobilenet_v3_large_fpn", ["person"], str(tmp_path / "mobile.pt"))
    with pytest.raises(WeightsUnavailableError, match="not found"):
        build_model(TINY_ARCH, ["person"], str(tmp_path / "absent.pth"))


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_backbone_stages_follow_torchvision_trainable_layers(name):
    arch = get_architecture(name)
    model = arch.builder(weights=None, weights_backbone=None, num_classes=3)
    stages = backbone_stages(model, arch)
    assert len(stages) == arch.num_backbone_stages
    body_params = {id(p) for p in model.backbone.body.parameters()}
    staged = {id(p) for stage in stages for m in stage for p in m.parameters()}
    assert staged == body_params  # every body parameter belongs to exactly one stage
    configure_trainable(model, arch, backbone_layers=2, train_fpn=False)
    trainable = {id(p) for p in model.backbone.parameters() if p.requires_grad}
    assert trainable == {id(p) for stage in stages[-2:] for m in stage for p in m.parameters()}
    assert all(p.requires_grad for p in model.roi_heads.box_predictor.parameters())
    with pytest.raises(ValueError, match="trainable backbone layers"):
        configure_trainable(model, arch, backbone_layers=arch.num_backbone_stages + 1, train_fpn=True)

