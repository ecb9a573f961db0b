"""The fine-tuning recipe's parts (issue 12): two-stage's stage 2 on the whole network, layer-wise learning-rate
decay, and the moving average of the weights that evaluation, best.pt and the export use."""

from __future__ import annotations

import pytest
import torch

from artdet.detector.architectures import get_architecture
from artdet.detector.config import TrainConfig
from artdet.detector.freezing import backbone_stages, configure_trainable, parameter_groups
from artdet.detector.hooks import BestCheckpointHook, EvaluationHook, PeriodicCheckpointHook
from artdet.detector.models import build_model
from artdet.detector.strategy import Stage, manual_plan
from artdet.detector.trainer import Hook, Trainer
from tests.conftest import TINY_ARCH, tiny_trainer

ARCH = get_architecture(TINY_ARCH)


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in module.state_dict().items()}


class SnapshotAtStage(Hook):
    """The model's weights when stage `index` begins."""

    def __init__(self, index: int):
        self.index, self.weights = index, None

    def before_stage(self, trainer: Trainer) -> None:
        if trainer.state.stage_index == self.index:
            self.weights = _snapshot(trainer.model)


def test_two_stage_stage_2_trains_every_parameter():
    stages = manual_plan(TrainConfig(train="x", stage1_epochs=1, stage2_epochs=1, lr=0.01), ARCH, "two-stage")
    snapshot = SnapshotAtStage(1)
    trainer = tiny_trainer([snapshot], stages)
    trainer.train()
    before, after = snapshot.weights, _snapshot(trainer.model)
    parameters = {name for name, _ in trainer.model.named_parameters()}
    unchanged = sorted(name for name in parameters if torch.equal(before[name], after[name]))
    assert unchanged == []  # backbone (every stage), FPN, RPN, box head and predictor all moved in stage 2
    for stage in backbone_stages(trainer.model, ARCH):  # and so every backbone stage, counted as the ARCH splits it
        assert all(not torch.equal(before[n], after[n]) for module in stage for n, p in trainer.model.named_parameters()
                   if any(p is q for q in module.parameters()))


def test_layer_decay_gives_each_backbone_stage_the_documented_rate():
    model, _ = build_model(TINY_ARCH, ["thing"], "none", min_size=64, max_size=96)
    configure_trainable(model, ARCH, ARCH.num_backbone_stages, True)
    groups = parameter_groups(model, ARCH, lr=0.01, layer_decay=0.5)
    rate = {id(p): group["lr"] for group in groups for p in group["params"]}
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert sorted(map(id, trainable)) == sorted(rate) and sum(len(g["params"]) for g in groups) == len(trainable)
    stages = backbone_stages(model, ARCH)
    for k, stage in enumerate(reversed(stages), start=1):  # the top stage is k = 1
        assert [rate[id(p)] for module in stage for p in module.parameters()] == pytest.approx(
            [0.01 * 0.5 ** k] * sum(1 for module in stage for _ in module.parameters()))
    for part in (model.backbone.fpn, model.rpn, model.roi_heads):
        assert {rate[id(p)] for p in part.parameters()} == {0.01}
    assert groups[0]["lr"] == 0.01  # the group the logs show: the heads'
    assert [g["lr"] for g in parameter_groups(model, ARCH, 0.01, 1.0)] == [0.01]


def test_a_stage_trains_with_the_decayed_rates():
    trainer = tiny_trainer([], [Stage("s", 1, ARCH.num_backbone_stages, True, 0.02)], layer_decay=0.8)
    trainer.train()
    assert sorted(g["initial_lr"] for g in trainer.optimizer.param_groups) == pytest.approx(
        sorted(0.02 * 0.8 ** k for k in range(ARCH.num_backbone_stages + 1)))


def _ema_trainer(tmp_path, evaluated: list, epochs: int = 2) -> Trainer:
    def evaluate(model: torch.nn.Module) -> dict:
        evaluated.append(_snapshot(model))
        return {"map": float(len(evaluated))}  # every epoch improves: best.pt is written each time

    hooks = [EvaluationHook(evaluate), BestCheckpointHook(tmp_path / "best.pt"),
             PeriodicCheckpointHook(tmp_path / "last.pt")]
    trainer = tiny_trainer(hooks, [Stage("s", epochs, ARCH.num_backbone_stages, True, 0.01)], ema_decay=0.5)
    trainer.model_payload = lambda model: {"model": _snapshot(model)}
    return trainer


def test_evaluation_and_best_pt_use_the_moving_average_and_last_pt_keeps_both(tmp_path):
    evaluated: list = []
    trainer = _ema_trainer(tmp_path, evaluated)
    trainer.train()
    ema, raw = _snapshot(trainer.ema.module), _snapshot(trainer.model)
    differ = [name for name, _ in trainer.model.named_parameters() if not torch.equal(ema[name], raw[name])]
    assert differ  # the average lags the raw weights
    assert all(torch.equal(evaluated[-1][k], ema[k]) for k in ema)  # what the last evaluation saw
    best = torch.load(tmp_path / "best.pt", weights_only=True)["model"]
    assert all(torch.equal(best[k], ema[k]) for k in ema)  # what export reads
    last = torch.load(tmp_path / "last.pt", weights_only=True)
    assert all(torch.equal(last["model"][k], raw[k]) for k in raw)  # training resumes from the raw weights
    assert last["ema"] is not None


def test_a_resumed_run_restores_the_moving_average_bit_for_bit(tmp_path):
    straight = _ema_trainer(tmp_path / "straight", [])
    straight.train()

    class Stop(Exception):
        pass

    class StopAfterFirstEpoch(Hook):
        order = Hook.SAVE + 2

        def after_epoch(self, trainer: Trainer) -> None:
            raise Stop

    first = _ema_trainer(tmp_path / "resumed", [])
    first.hooks.append(StopAfterFirstEpoch())
    with pytest.raises(Stop):
        first.train()
    resumed = _ema_trainer(tmp_path / "resumed", [])
    checkpoint = torch.load(tmp_path / "resumed" / "last.pt", weights_only=False)
    resumed.model.load_state_dict(checkpoint["model"])
    resumed.load_state_dict(checkpoint)
    resumed.train()
    for name, value in straight.ema.state_dict().items():
        assert torch.equal(value, resumed.ema.state_dict()[name]), name
    for name, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name
