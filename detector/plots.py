"""A finished run's plots, drawn from what the run recorded, so they can be drawn again from its folder:
metrics.json, events.jsonl, best_evaluation.json and the validation images.

    results.png          each loss part and the learning rate per iteration, val mAP and AP50 per epoch
    per_class_ap.png     AP per class, before and after fine-tuning
    pr_curves.png        precision-recall per class at IoU 0.5, of the best checkpoint
    val_predictions.png  validation images: ground truth beside the best checkpoint's detections

matplotlib (the `train` extra) is imported only when a figure is drawn, and used through `Figure` objects alone
(the Agg canvas, no pyplot state).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from artdet.detector.dataset import DetectionDataset, ImageRecord
from artdet.detector.draw import draw_detections
from artdet.detector.events import EVENTS_FILE, read_events
from artdet.detector.images import decode_image
from artdet.detector.results import Detection, DetectionResult

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

BEST_EVALUATION_FILE = "best_evaluation.json"
DRAWN_IMAGES = 4  # validation images drawn with the best checkpoint's detections
DRAWN_SIDE = 480  # longest side of a drawn validation image, in pixels


def _figure(width: float, height: float) -> "Figure":
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def training_steps(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The step events in iteration order; where a resumed run repeated iterations, the later ones."""
    steps = {e["iteration"]: e for e in events if e["type"] == "step"}
    return [steps[i] for i in sorted(steps)]


def stage_boundaries(steps: list[dict[str, Any]]) -> list[int]:
    """The iterations after which a new stage began."""
    return [b["iteration"] - 1 for a, b in zip(steps, steps[1:]) if b["stage_index"] != a["stage_index"]]


def _curve_panel(axes: "Axes", title: str, x: list[float], y: list[float], boundaries: list[int],
                 baseline: float | None = None, marker: str = "") -> None:
    axes.plot(x, y, marker=marker, linewidth=1)
    if baseline is not None:
        axes.axhline(baseline, color="grey", linestyle="--", linewidth=1, label="baseline")
        axes.legend(fontsize="small")
    for boundary in boundaries:
        axes.axvline(boundary, color="grey", linestyle=":", linewidth=1)
    axes.set_title(title, fontsize="medium")
    axes.set_xlabel("iteration", fontsize="small")


def results_figure(metrics: dict[str, Any], steps: list[dict[str, Any]]) -> "Figure":
    """A panel per loss part, the learning rate, and val mAP and AP50 per epoch against the baseline's (dashed);
    dotted lines where a stage began."""
    boundaries = stage_boundaries(steps)
    iterations = [s["iteration"] for s in steps]
    losses = list(steps[0]["losses"]) if steps else []
    columns = 4
    rows = math.ceil((len(losses) + 3) / columns)  # the losses, lr, mAP, AP50
    figure = _figure(4 * columns, 3 * rows)
    panels = iter(figure.subplots(rows, columns, squeeze=False).flat)
    for name in losses:
        _curve_panel(next(panels), f"train/{name}", iterations, [s["losses"][name] for s in steps], boundaries)
    _curve_panel(next(panels), "train/lr", iterations, [s["lr"] for s in steps], boundaries)
    epochs = metrics["epochs"]
    for key in ("map", "ap50"):
        _curve_panel(next(panels), f"val/{key}", [e["iteration"] for e in epochs], [e[key] for e in epochs],
                     boundaries, baseline=metrics["baseline"][key], marker="o")
    for unused in panels:
        unused.set_axis_off()
    return figure


def per_class_ap_figure(metrics: dict[str, Any]) -> "Figure":
    """AP@[.5:.95] per class: the starting model's (baseline) beside the fine-tuned one's."""
    names = metrics["class_names"]
    figure = _figure(max(5.0, 0.8 * len(names) + 2), 4)
    axes = figure.subplots()
    x = np.arange(len(names))
    for offset, (label, per_class) in zip((-0.2, 0.2), (("baseline", metrics["baseline"]["per_class_ap"]),
                                                        ("fine-tuned", metrics["per_class_ap"]))):
        values = [np.nan if per_class.get(n) is None else per_class[n] for n in names]  # None: no ground truth
        axes.bar(x + offset, values, 0.4, label=label)
    axes.set_xticks(x, names, rotation=45 if len(names) > 6 else 0, ha="right" if len(names) > 6 else "center")
    axes.set_ylim(0, 1)
    axes.set_ylabel("AP@[.5:.95]")
    axes.set_title("AP per class")
    axes.legend(fontsize="small")
    return figure


def pr_curves_figure(evaluation: dict[str, Any]) -> "Figure":
    """Each class's precision-recall curve at IoU 0.5 (the best checkpoint's), its AP50 in the legend."""
    metrics = evaluation["metrics"]
    figure = _figure(6, 5)
    axes = figure.subplots()
    for name, precision in metrics["pr_curves50"].items():
        if precision is not None:
            recall = np.linspace(0.0, 1.0, len(precision))
            axes.plot(recall, precision, linewidth=1.5, label=f"{name} (AP50 {metrics['per_class_ap50'][name]:.3f})")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.02)
    axes.set_xlabel("recall")
    axes.set_ylabel("precision")
    axes.set_title(f"precision-recall at IoU 0.5, {evaluation['checkpoint']} (mAP50 {metrics['ap50']:.3f})")
    axes.legend(fontsize="small", loc="lower left")
    return figure


def drawn_image(record: ImageRecord, detections: list[Detection]) -> Image.Image:
    """The image at most DRAWN_SIDE pixels a side with `detections` (in the image's pixels) drawn on it."""
    scale = min(1.0, DRAWN_SIDE / max(record.width, record.height))
    size = (max(1, round(record.width * scale)), max(1, round(record.height * scale)))
    pixels = decode_image(record.path, needed_size=lambda _: size)
    pixels = np.asarray(Image.fromarray(pixels).resize(size))
    scaled = [Detection(tuple(v * scale for v in d.box), d.score, d.label_id, d.label) for d in detections]
    return draw_detections(pixels, DetectionResult(size[0], size[1], scaled))


def ground_truth(dataset: DetectionDataset, image_id: int) -> list[Detection]:
    return [Detection(b.box, 1.0, b.label, dataset.class_names[b.label - 1]) for b in dataset.boxes(image_id)]


def predicted(dataset: DetectionDataset, detections: list[dict[str, Any]]) -> list[Detection]:
    return [Detection(tuple(d["box"]), d["score"], d["label_id"], dataset.class_names[d["label_id"] - 1])
            for d in detections]


def val_predictions_figure(evaluation: dict[str, Any], dataset: DetectionDataset) -> "Figure":
    """A row per validation image that best_evaluation.json holds detections for: ground truth | detections."""
    records = {record.id: record for record in dataset.images}
    rows = [(records[p["image_id"]], p["detections"]) for p in evaluation["predictions"]]
    figure = _figure(8, 3.5 * len(rows))
    for (record, detections), (left, right) in zip(rows, figure.subplots(len(rows), 2, squeeze=False)):
        left.imshow(drawn_image(record, ground_truth(dataset, record.id)))
        left.set_title(f"{record.file_name}: ground truth", fontsize="small")
        right.imshow(drawn_image(record, predicted(dataset, detections)))
        right.set_title(f"{evaluation['checkpoint']}, score ≥ {evaluation['score_threshold']:.2f}",
                        fontsize="small")
        left.set_axis_off()
        right.set_axis_off()
    return figure


def draw_run_plots(run_dir: Path, val_set: DetectionDataset) -> list[str]:
    """Draw a finished run's plots into its folder; returns their file names. The last two need
    best_evaluation.json (training writes it; a run without a best checkpoint has none)."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    events, _ = read_events(run_dir / EVENTS_FILE)
    figures = {"results.png": lambda: results_figure(metrics, training_steps(events)),
               "per_class_ap.png": lambda: per_class_ap_figure(metrics)}
    if (run_dir / BEST_EVALUATION_FILE).is_file():
        evaluation = json.loads((run_dir / BEST_EVALUATION_FILE).read_text())
        figures["pr_curves.png"] = lambda: pr_curves_figure(evaluation)
        figures["val_predictions.png"] = lambda: val_predictions_figure(evaluation, val_set)
    for name, draw in figures.items():
        draw().savefig(run_dir / name)
    return list(figures)
