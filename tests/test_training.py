"""The training engine: stage freezing, overfitting sanity, exact resume, torchrun."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from artdet.detector.architectures import get_architecture
from artdet.detector.config import TrainConfig
from artdet.detector.freezing import backbone_stages
from artdet.detector.trainer import Hook
from artdet.detector.training import train
from tests.conftest import ROOT, TINY_ARCH, artdet


class StageSnapshots(Hook):
    """Copies of the model's state at each stage start and at the end of the run."""

    def __init__(self):
        self.snapshots: list[dict[str, torch.Tensor]] = []
        self.model = None

    def before_stage(self, trainer):
        self.model = trainer.model
        self.snapshots.append({k: v.detach().clone() for k, v in trainer.model.state_dict().items()})

    after_train = before_stage


def _tiny_config(shapes, **overrides) -> TrainConfig:
    values = dict(train=str(shapes["train"]), val=str(shapes["val"]), arch=TINY_ARCH, weights="coco",
                  max_size=128, batch_size=4, workers=0, stage1_epochs=1, stage2_epochs=1, warmup_iters=0,
                  seed=0)
    values.update(overrides)
    return TrainConfig(**values)


def test_stage1_freezes_backbone_and_batchnorm_stage2_trains_unfrozen(tmp_path, torch_home, shapes):
    snapshots = StageSnapshots()
    config = _tiny_config(shapes, strategy="two-stage", trainable_backbone_layers=2, lr=0.01)
    summary = train(config, tmp_path / "run", progress=False, extra_hooks=[snapshots])
    start, after_stage1, after_stage2 = snapshots.snapshots
    model = snapshots.model
    backbone_keys = [k for k in start if k.startswith("backbone.")]
    batchnorm_keys = [k for k in start if k.endswith(("running_mean", "running_var"))]
    # the checks below cover real tensors: the backbone (body and FPN) with every BN statistic in it
    assert backbone_keys and batchnorm_keys and set(batchnorm_keys) <= set(backbone_keys)
    assert any(".fpn." in k for k in backbone_keys) and any(".body." in k for k in backbone_keys)
    # a pretrained start has FrozenBatchNorm2d (no num_batches_tracked buffer), not BatchNorm2d
    assert not [k for k in start if k.endswith("num_batches_tracked")]
    # stage 1: every backbone tensor (parameters and BN statistics) unchanged, the new head trained
    assert all(torch.equal(start[k], after_stage1[k]) for k in backbone_keys)
    assert not torch.equal(start["roi_heads.box_predictor.cls_score.weight"],
                            after_stage1["roi_heads.box_predictor.cls_score.weight"])
    # stage 2: the top two stages and the FPN changed; the lower stages and every BN statistic did not
    arch = get_architecture(TINY_ARCH)
    names = {id(p): n for n, p in model.named_parameters()}
    stages = backbone_stages(model, arch)
    frozen = [names[id(p)] for stage in stages[:-2] for m in stage for p in m.parameters()]
    unfrozen = [names[id(p)] for stage in stages[-2:] for m in stage for p in m.parameters()]
    assert all(torch.equal(after_stage1[k], after_stage2[k]) for k in frozen)
    changed = [k for k in unfrozen if not torch.equal(after_stage1[k], after_stage2[k])]
    assert len(changed) >= 0.9 * len(unfrozen)
    assert any(not torch.equal(after_stage1[k], after_stage2[k]) for k in after_stage1 if ".fpn." in k)
    assert all(torch.equal(start[k], after_stage2[k]) for k in batchnorm_keys)
    assert [e["stage"] for e in summary["epochs"]] == ["feature-extraction", "fine-tuning"]


def test_overfits_a_tiny_synthetic_set(tmp_path, overfit_run):
    """Labels, targets and evaluation are wired right: a tiny set is learnt to a high train-set AP50."""
    metrics = json.loads((overfit_run / "metrics.json").read_text())
    assert metrics["baseline"]["ap50"] < 0.1
    assert metrics["final"]["ap50"] >= 0.5, metrics["final"]
    assert set(metrics["per_class_ap"]) == {"circle", "square"}
    assert (overfit_run / "checkpoints" / "best.pt").is_file()
    assert any((overfit_run / "tensorboard").iterdir())


def _events(run_dir: Path) -> list[dict]:
    path = run_dir / "events.jsonl"
    if not path.is_file():
        return []
    lines = path.read_text().splitlines()
    events = []
    for line in lines:
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:  # a line being written
            pass
    return events


def _resume_args(shapes, out: Path) -> list[str]:
    return ["train", "--train", shapes["train"], "--val", shapes["val"], "--arch", TINY_ARCH, "--weights", "coco",
            "--out", out, "--strategy", "two-stage", "--stage1-epochs", "1", "--stage2-epochs", "3",
            "--max-size", "128", "--seed", "7", "--workers", "1", "--batch-size", "4", "--quiet"]


def test_killed_run_resumes_to_the_same_weights(tmp_path, torch_home, shapes):
    artdet(*_resume_args(shapes, tmp_path / "straight"))

    killed = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-m", "artdet.tools.cli", *map(str, _resume_args(shapes, killed))],
                               cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=os.environ.copy())
    deadline = time.time() + 600
    try:
        while time.time() < deadline:
            events = _events(killed)
            saved = [e for e in events if e["type"] == "checkpoint_saved"]
            steps_after = [e for e in events if e["type"] == "step" and e["stage"] == "fine-tuning"
                           and e["epoch"] == 2]
            if len(saved) >= 2 and steps_after:  # mid-stage-2, after its first epoch's checkpoint
                break
            assert process.poll() is None, "the run ended before it could be killed"
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL
    assert not (killed / "metrics.json").exists()

    artdet("train", "--resume", killed, "--quiet")
    resumed_events = _events(killed)
    assert any(e["type"] == "resumed" and e["stage_index"] == 1 for e in resumed_events)
    straight = torch.load(tmp_path / "straight" / "checkpoints" / "last.pt", weights_only=True)["model"]
    again = torch.load(killed / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert straight.keys() == again.keys()
    different = [k for k in straight if not torch.equal(straight[k], again[k])]
    assert not different, different[:5]
    metrics = json.loads((killed / "metrics.json").read_text())
    assert [e["global_epoch"] for e in metrics["epochs"]] == [1, 2, 3, 4]


def test_torchrun_two_processes_write_one_consistent_run(tmp_path, torch_home, shapes):
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "artdet.tools.cli", "train", "--train", shapes["train"], "--val", shapes["val"],
               "--arch", TINY_ARCH,
               "--weights", "coco", "--out", out, "--stage1-epochs", "1", "--stage2-epochs", "1",
               "--max-size", "128", "--workers", "0", "--batch-size", "2", "--quiet"]
    result = subprocess.run([str(c) for c in command], cwd=ROOT, capture_output=True, text=True, timeout=900,
                            env=os.environ.copy())
    assert result.returncode == 0, result.stderr[-4000:]
    events = _events(out)
    configured = [e for e in events if e["type"] == "run_configured"]
    assert len(configured) == 1 and configured[0]["world_size"] == 2
    steps = [e for e in events if e["type"] == "step"]
    # 8 training images over 2 ranks, batch 2: 2 steps per epoch per rank, logged once (rank 0)
    assert [(e["stage"], e["step"]) for e in steps] == [("feature-extraction", 1), ("feature-extraction", 2),
                                                         ("fine-tuning", 1), ("fine-tuning", 2)]
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["epochs"]) == 2
    payload = torch.load(out / "checkpoints" / "best.pt", weights_only=True)
    assert not any(k.startswith("module.") for k in payload["model"])
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["best.pt", "last.pt"]
