"""A finished run's folder as a user of Ultralytics or TensorBoard expects it: plots drawn from what the run
recorded, and TensorBoard with the baseline, per-class AP, hparams and the drawn validation images."""

from __future__ import annotations

import io
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from artdet.detector import training
from artdet.detector.config import TrainConfig
from artdet.detector.dataset import load_coco
from artdet.detector.draw import class_colour
from artdet.detector.plots import (drawn_image, per_class_ap_figure, pr_curves_figure, results_figure, training_steps)
from artdet.detector.results import Detection
from artdet.detector.trainer import Hook
from artdet.tools.experiments.synthetic import write_shapes_dataset
from tests.conftest import TINY_ARCH

PLOTS = ["results.png", "per_class_ap.png", "pr_curves.png", "val_predictions.png"]


class ScrambleAtTheEnd(Hook):
    """Leaves the trainer's model unlike best.pt (as a last epoch worse than the best would)."""

    def after_train(self, trainer) -> None:
        import torch

        generator = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for parameter in trainer.model.parameters():
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, shapes) -> SimpleNamespace:
    """One short training; records what the run directory held when the plotting began."""
    config = TrainConfig(train=str(shapes["train"]), val=str(shapes["val"]), arch=TINY_ARCH, weights="none",
                         strategy="full", stage1_epochs=0, stage2_epochs=1, max_iters_per_epoch=1, max_size=96,
                         batch_size=2, workers=0, warmup_iters=0, seed=0)
    config.augment.enabled = False
    run_dir = tmp_path_factory.mktemp("plots") / "run"
    written_before_plots = []

    def spy(run_dir: Path, val_set):
        written_before_plots.extend(p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*") if p.is_file())
        return draw_run_plots(run_dir, val_set)

    draw_run_plots = training.draw_run_plots
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(training, "draw_run_plots", spy)
        training.train(config, run_dir, progress=False, extra_hooks=[ScrambleAtTheEnd()])
    return SimpleNamespace(dir=run_dir, config=config, written_before_plots=written_before_plots,
                           metrics=json.loads((run_dir / "metrics.json").read_text()))


def _not_blank(image: Image.Image) -> bool:
    return any(low < high for low, high in image.convert("RGB").getextrema())


def test_a_finished_run_holds_its_plots_drawn_after_the_model_and_metrics(tiny_run):
    for name in PLOTS:
        with Image.open(tiny_run.dir / name) as image:
            assert image.format == "PNG" and image.width >= 400 and image.height >= 300, (name, image.size)
            assert _not_blank(image), name
    assert {"checkpoints/best.pt", "checkpoints/last.pt", "metrics.json"} <= set(tiny_run.written_before_plots)
    evaluation = json.loads((tiny_run.dir / "best_evaluation.json").read_text())
    kept = ("detections", "map", "ap50", "per_class_ap")  # best.pt evaluated again, not the model in memory
    assert {k: evaluation["metrics"][k] for k in kept} == {k: tiny_run.metrics["final"][k] for k in kept}
    assert {name: len(curve) for name, curve in evaluation["metrics"]["pr_curves50"].items()} \
        == {"circle": 101, "square": 101}
    assert "pr_curves50" not in json.dumps(tiny_run.metrics)  # metrics.json stays small
    assert len(evaluation["predictions"]) == 4
    summary = [line for line in (tiny_run.dir / "events.jsonl").read_text().splitlines() if '"summary"' in line]
    assert json.loads(summary[-1])["summary"]["plots"] == PLOTS


def test_tensorboard_holds_the_baseline_per_class_ap_hparams_and_the_drawn_images(tiny_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    board = EventAccumulator(str(tiny_run.dir / "tensorboard"), size_guidance={"scalars": 0, "images": 0,
                                                                               "tensors": 0})
    board.Reload()
    baseline, final = tiny_run.metrics["baseline"], tiny_run.metrics["final"]
    first = board.Scalars("val/map")[0]
    assert (first.step, first.value) == (0, pytest.approx(baseline["map"]))
    for name in ("circle", "square"):
        points = board.Scalars(f"ap_per_class/{name}")
        assert [p.step for p in points] == [0, final["iteration"]]
        assert [p.value for p in points] == pytest.approx([baseline["per_class_ap"][name],
                                                           final["per_class_ap"][name]])
    hparams = board.PluginTagToContent("hparams")
    start = HParamsPluginData.FromString(hparams["_hparams_/session_start_info"]).session_start_info.hparams
    assert start["lr"].number_value == pytest.approx(tiny_run.config.lr)
    assert start["strategy"].string_value == "full" and start["augment.enabled"].bool_value is False
    assert board.Scalars("hparam/map")[-1].value == pytest.approx(final["map"])
    assert set(board.Tags()["images"]) == {f"plots/{Path(name).stem}" for name in PLOTS}
    (drawn,) = board.Images("plots/val_predictions")
    with Image.open(io.BytesIO(drawn.encoded_image_string)) as image, \
            Image.open(tiny_run.dir / "val_predictions.png") as saved:
        assert image.size == saved.size and _not_blank(image)


def _steps(losses: dict[int, float], stage_of: dict[int, int]) -> list[dict]:
    return [{"type": "step", "iteration": i, "stage_index": stage_of[i], "lr": 0.01 / i,
             "losses": {"loss": loss, "loss_box_reg": loss / 2}} for i, loss in losses.items()]


METRICS = {
    "class_names": ["circle", "square", "triangle"],
    "baseline": {"map": 0.1, "ap50": 0.2, "per_class_ap": {"circle": 0.1, "square": 0.05, "triangle": None}},
    "epochs": [{"iteration": 2, "map": 0.2, "ap50": 0.4}, {"iteration": 4, "map": 0.3, "ap50": 0.5}],
    "per_class_ap": {"circle": 0.4, "square": 0.2, "triangle": None},
}


def _panel(figure, title: str):
    return next(axes for axes in figure.axes if axes.get_title() == title)


def test_plots_draw_what_a_hand_made_record_holds(tmp_path):
    # a resumed run repeated iteration 3: the later step counts
    events = _steps({1: 2.0, 2: 1.5, 3: 9.0}, {1: 0, 2: 0, 3: 1}) + _steps({3: 1.2, 4: 1.0}, {3: 1, 4: 1})
    steps = training_steps(events)
    assert [s["losses"]["loss"] for s in steps] == [2.0, 1.5, 1.2, 1.0]

    figure = results_figure(METRICS, steps)
    assert [a.get_title() for a in figure.axes if a.axison] == ["train/loss", "train/loss_box_reg", "train/lr",
                                                               "val/map", "val/ap50"]
    lines = {tuple(line.get_xdata()): list(line.get_ydata()) for line in _panel(figure, "val/map").lines}
    assert lines[(2, 4)] == [0.2, 0.3]  # the epochs
    assert [0.1, 0.1] in lines.values()  # the baseline, across the panel
    assert lines[(2, 2)] == [0, 1]  # stage 2 began after iteration 2
    assert list(_panel(figure, "train/loss").lines[0].get_ydata()) == [2.0, 1.5, 1.2, 1.0]

    bars = [p.get_height() for p in per_class_ap_figure(METRICS).axes[0].patches]
    assert bars[:2] + bars[3:5] == [0.1, 0.05, 0.4, 0.2] and np.isnan(bars[2]) and np.isnan(bars[5])

    curve = [1.0] * 50 + [0.5] * 30 + [0.0] * 21
    evaluation = {"checkpoint": "best.pt", "metrics": {"ap50": 0.7, "pr_curves50": {"circle": curve, "square": None},
                                                       "per_class_ap50": {"circle": 0.7, "square": None}}}
    (line,) = pr_curves_figure(evaluation).axes[0].lines
    assert list(line.get_ydata()) == curve and line.get_xdata()[-1] == 1.0 and "AP50 0.700" in line.get_label()

    for name, draw in (("results.png", lambda: figure), ("pr.png", lambda: pr_curves_figure(evaluation))):
        draw().savefig(tmp_path / name)
        with Image.open(tmp_path / name) as image:
            assert _not_blank(image)


def test_validation_images_are_drawn_with_their_boxes_scaled_to_the_drawing(tmp_path):
    dataset = load_coco(write_shapes_dataset(tmp_path, images=1, size=(960, 640)))
    record = dataset.images[0]
    box = dataset.boxes(record.id)[0]
    image = drawn_image(record, [Detection(box.box, 0.9, box.label, dataset.class_names[box.label - 1])])
    assert image.size == (480, 320)
    pixels = np.asarray(image)
    coloured = np.argwhere((pixels == class_colour(box.label)).all(axis=2))  # the box and its label
    bottom_edge = coloured[coloured[:, 0] == coloured[:, 0].max()]
    x1, _, x2, y2 = (v / 2 for v in box.box)
    assert abs(bottom_edge[0, 0] - y2) <= 2
    assert abs(bottom_edge[:, 1].min() - x1) <= 2 and abs(bottom_edge[:, 1].max() - x2) <= 2


def test_a_plotting_failure_is_reported_not_raised(tmp_path, capsys):
    assert training.write_plots(SimpleNamespace(run_dir=tmp_path, val_set=None)) == []  # no metrics.json
    assert "the run's plots were not drawn: FileNotFoundError" in capsys.readouterr().err


def test_a_tensorboard_summary_failure_is_reported_not_raised(tmp_path, capsys):
    """The summary event comes after best.pt and metrics.json: a plot it cannot read must not fail the run."""
    from artdet.detector.events import new_event
    from artdet.detector.writers import TensorBoardWriter

    writer = TensorBoardWriter(tmp_path / "tensorboard", hparams={"lr": 0.01})
    summary = {"final": {"map": 0.5, "ap50": 0.7, "iteration": 4}, "plots": ["results.png"]}  # never drawn
    writer.write(new_event("summary", summary=summary))
    writer.close()
    assert "TensorBoard's summary (hparams, plots) was not written: FileNotFoundError" in capsys.readouterr().err
