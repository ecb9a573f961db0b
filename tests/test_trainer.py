"""The training loop's contract: the order of a run's events, a resumed run continuing that sequence, hook
order independent of the list, and Trainer.state_dict as the one owner of what a resume needs."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

from artdet.detector.config import TrainConfig
from artdet.detector.trainer import EventStorage, EventWriter, Hook, Trainer
from artdet.detector.training import train
from tests.conftest import TINY_ARCH, artdet, tiny_trainer


class Crash(Exception):
    pass


class CrashAfterCheckpoint(Hook):
    """Ends the process's run right after the last.pt of global epoch `epoch` is written, as a kill would."""

    order = Hook.SAVE + 2

    def __init__(self, epoch: int):
        self.epoch = epoch

    def after_epoch(self, trainer: Trainer) -> None:
        if trainer.global_epoch == self.epoch:
            raise Crash


def _config(shapes, **overrides) -> TrainConfig:
    values = dict(train=str(shapes["train"]), val=str(shapes["val"]), arch=TINY_ARCH, weights="coco",
                  strategy="two-stage", stage1_epochs=1, stage2_epochs=2, max_size=96, batch_size=2, workers=0,
                  max_iters_per_epoch=2, warmup_iters=0, seed=0)
    values.update(overrides)
    config = TrainConfig(**values)
    config.augment.enabled = False
    return config


def _events(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]


def _epochs(events: list[dict]) -> list[list[str]]:
    """Each epoch's event types, from its first step to its last.pt (best.pt saves left out: they depend on
    whether the mAP improved)."""
    epochs, current = [], []
    for event in events:
        kind = event["type"]
        if kind == "step" and current and current[-1] != "step":
            epochs.append(current)
            current = []
        if kind in ("step", "epoch_finished", "evaluated", "early_stopped") or event.get("checkpoint") == "last.pt":
            if not (kind == "step" and current and current[-1] == "step"):
                current.append(kind)
    return epochs + [current]


def test_an_epochs_events_come_in_order_and_a_resumed_run_continues_the_sequence(tmp_path, torch_home, shapes):
    run_dir = tmp_path / "run"
    with pytest.raises(Crash):
        train(_config(shapes), run_dir, progress=False, extra_hooks=[CrashAfterCheckpoint(epoch=2)])
    before = _events(run_dir)
    assert not (run_dir / "metrics.json").exists()

    summary = train(None, run_dir, resume=True, progress=False)
    events = _events(run_dir)
    assert events[:len(before)] == before  # the resumed run appends; it rewrites nothing

    one_epoch = ["step", "epoch_finished", "evaluated", "checkpoint_saved"]
    assert _epochs(events) == [one_epoch] * 3
    finished = [(e["stage_index"], e["epoch"], e["global_epoch"]) for e in events if e["type"] == "epoch_finished"]
    assert finished == [(0, 1, 1), (1, 1, 2), (1, 2, 3)]  # every epoch once: none lost, none repeated
    resumed = [e for e in events if e["type"] == "resumed"]
    assert [(e["stage_index"], e["epoch"]) for e in resumed] == [(1, 1)]
    iterations = [e["iteration"] for e in events if e["type"] == "step"]
    assert iterations == list(range(1, len(iterations) + 1)) and len(iterations) == 6
    assert [e["global_epoch"] for e in summary["epochs"]] == [1, 2, 3]
    assert events[-2]["type"] == "run_finished" and events[-1]["type"] == "summary"


def test_resuming_a_finished_run_says_so_and_touches_nothing(tmp_path, torch_home, shapes):
    """Issue 11 item 13: `--resume` of a finished run used to re-run its tail and write more events."""
    run_dir = tmp_path / "run"
    train(_config(shapes, stage2_epochs=0), run_dir, progress=False)
    files = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()}
    result = artdet("train", "--resume", run_dir)
    assert result.returncode == 0 and "has finished training; nothing to resume" in result.stderr
    assert {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()} == files  # nothing touched


class Recorder(Hook):
    def __init__(self, name: str, seen: list[str], order: int = Hook.DEFAULT):
        self._name, self.seen, self.order = name, seen, order

    @property
    def name(self) -> str:
        return self._name

    def after_epoch(self, trainer: Trainer) -> None:
        self.seen.append(self._name)


def test_hooks_run_by_their_order_not_their_place_in_the_list():
    seen: list[str] = []
    trainer = tiny_trainer([Recorder("save", seen, Hook.SAVE), Recorder("other", seen),
                             Recorder("evaluate", seen, Hook.EVALUATE), Recorder("decide", seen, Hook.DECIDE)])
    trainer.train()
    assert seen == ["evaluate", "decide", "save", "other"] * 2


def test_two_hooks_of_one_name_are_refused_not_merged_in_the_checkpoint():
    with pytest.raises(ValueError, match="distinct names"):
        tiny_trainer([Recorder("same", []), Recorder("same", [])])


class Counter(Hook):
    def __init__(self):
        self.epochs = 0

    def after_epoch(self, trainer: Trainer) -> None:
        self.epochs += 1

    def state_dict(self):
        return {"epochs": self.epochs}

    def load_state_dict(self, state):
        self.epochs = state["epochs"]


def test_state_dict_carries_position_optimizer_storage_hooks_and_rng():
    from artdet.detector.strategy import Stage

    stages = [Stage("one", 1, 0, False, 0.01), Stage("two", 2, 0, False, 0.001)]
    counter = Counter()
    trainer = tiny_trainer([counter], stages)
    trainer.storage.add_evaluation({"map": 0.25, "stage": "one", "epoch": 1})
    trainer.stages = stages[:1]  # stop after stage one
    trainer.train()
    trainer.stages = stages
    trainer.state.stage_index, trainer.state.epoch = 0, 1
    state = trainer.state_dict()
    saved_rng = torch.get_rng_state()

    torch.rand(100)  # the generator moves on; the state must bring it back
    again = tiny_trainer([Counter()], stages)
    again.load_state_dict(state)
    assert (again.state.stage_index, again.state.epoch, again.state.iteration) == (1, 0, 2)  # stage one had ended
    assert again._pending_optimizer_state is None  # a new stage starts a new optimiser
    assert again.storage.best["map"] == 0.25 and len(again.storage.evaluations) == 1
    assert again.hooks[0].epochs == 1
    assert torch.equal(torch.get_rng_state(), saved_rng)

    state["trainer"]["epoch"] = 0  # mid-stage: the optimiser continues where it was
    mid = tiny_trainer([Counter()], stages)
    mid.load_state_dict(state)
    assert (mid.state.stage_index, mid.state.epoch) == (0, 0)
    assert mid._pending_optimizer_state is state["optimizer_state"]


@pytest.mark.parametrize("schedule", ["cosine", "step"])
def test_the_learning_rate_warms_up_then_decays_within_a_stage(schedule):
    from artdet.detector.trainer import build_scheduler

    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=0.01)
    config = TrainConfig(train="x", warmup_iters=10, schedule=schedule, step_milestones=(0.5, 0.8))
    scheduler = build_scheduler(optimizer, config, total=100)
    rates = []
    for _ in range(100):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates[0] == pytest.approx(0.01 * 0.001)
    assert rates[:11] == sorted(rates[:11]) and rates[10] == pytest.approx(0.01)  # linear warm-up to the full rate
    if schedule == "cosine":
        assert rates[10:] == sorted(rates[10:], reverse=True) and rates[-1] < 0.01 * 0.001
        assert rates[55] == pytest.approx(0.005)  # half-way through the decay: half the rate
    else:
        assert rates[10:50] == [pytest.approx(0.01)] * 40
        assert rates[50:80] == [pytest.approx(0.001)] * 30 and rates[80:] == [pytest.approx(0.0001)] * 20


class SlowEvaluation(Hook):
    """Stands in for an evaluation that costs `seconds` after every epoch."""

    order = Hook.EVALUATE

    def __init__(self, seconds: float):
        self.seconds = seconds

    def after_epoch(self, trainer: Trainer) -> None:
        time.sleep(self.seconds)


class Events(EventWriter):
    def __init__(self):
        self.events: list[dict] = []

    def write(self, event: dict) -> None:
        self.events.append(event)


def test_the_eta_counts_the_evaluations_still_to_come():
    from artdet.detector.strategy import Stage

    writer = Events()
    trainer = tiny_trainer([SlowEvaluation(1.0)],
                            [Stage("one", 2, 0, False, 0.01), Stage("two", 1, 0, False, 0.001)])
    trainer.storage = EventStorage([writer])
    trainer.epoch_overhead_seconds = 1.0  # as measured on the baseline evaluation
    trainer.train()
    steps = [e for e in writer.events if e["type"] == "step"]
    # the first step of each of the 3 epochs: 3, 2, then 1 evaluations to go, each about a second
    firsts = [e for e in steps if e["step"] == 1]
    assert [e["eta_seconds"] >= left * 1.0 for e, left in zip(firsts, (3, 2, 1))] == [True] * 3


def test_the_eta_counts_the_work_after_training():
    """A job's export (estimated by the worker's hook) is part of the one ETA its steps show."""
    from artdet.detector.strategy import Stage
    from artdet.detector.hooks import ExportEstimateHook

    writer = Events()
    trainer = tiny_trainer([ExportEstimateHook(validation_images=2, parity_images=4)],
                            [Stage("one", 1, 0, False, 0.01)])
    trainer.storage = EventStorage([writer])
    trainer.epoch_overhead_seconds = 10.0  # the baseline evaluation: 5 s an image
    trainer.train()
    last = [e for e in writer.events if e["type"] == "step"][-1]
    # no steps and no epochs left, the export's model runs: 2 for tracing + 4 images twice in PyTorch, once in ONNX
    assert last["eta_seconds"] >= (2 + 3 * 4) * 5.0


def test_a_replayed_watch_shows_the_trainers_eta_and_no_made_up_rate():
    """`jobs watch` on a finished job replays hundreds of steps at once: a rate from their arrival (it
    once read "12483 it/s") is false, so the bar shows the ETA the trainer measured, nothing else."""
    import io

    from artdet.detector.events import ProgressDisplay, new_event

    out = io.StringIO()
    display = ProgressDisplay(out)
    for step in range(1, 201):
        display.show(new_event("step", stage="stage1", stage_index=0, epoch=1, step=step, steps_per_epoch=200,
                               iteration=step, losses={"loss": 0.5}, lr=0.01, images=2, eta_seconds=400 - step))
    display.show(new_event("epoch_finished", stage="stage1", stage_index=0, epoch=1, global_epoch=1))
    text = out.getvalue()
    assert "it/s" not in text and "s/it" not in text
    assert "ETA 3:20" in text  # the last step's own estimate: 200 s