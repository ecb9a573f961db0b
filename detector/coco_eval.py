"""COCO metrics with pycocotools: mAP@[.5:.95], AP50, AP75, per-class AP, precision-recall curves. Torch-free."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from artdet.detector.dataset import DetectionDataset


@dataclass(frozen=True)
class ImageDetections:
    image_id: int
    boxes: np.ndarray  # [N, 4] x1, y1, x2, y2 in the image's pixels
    scores: np.ndarray  # [N]
    labels: np.ndarray  # [N] contiguous labels, 1..num_classes


def to_coco_results(dataset: DetectionDataset, detections: list[ImageDetections]) -> list[dict[str, Any]]:
    """COCO results format (what CVAT / Label Studio import as pre-annotations)."""
    results = []
    for det in detections:
        for (x1, y1, x2, y2), score, label in zip(det.boxes.tolist(), det.scores.tolist(), det.labels.tolist()):
            results.append({
                "image_id": det.image_id,
                "category_id": dataset.category_ids[int(label) - 1],
                "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                "score": round(float(score), 5),
            })
    return results


def _class_ap(precision: np.ndarray, class_index: int, iou_index: int | None = None) -> float | None:
    # precision: [T iou, R recall, K class, A area, M maxdets]; area "all", maxDets 100
    p = precision[:, :, class_index, 0, -1] if iou_index is None else precision[iou_index, :, class_index, 0, -1]
    valid = p[p > -1]
    return float(valid.mean()) if valid.size else None


def _pr_curve50(precision: np.ndarray, class_index: int) -> list[float] | None:
    """Precision at pycocotools' 101 recall points (0, 0.01, ..., 1) at IoU 0.5, area "all", maxDets 100;
    0 beyond the highest recall reached. None: no ground truth of the class."""
    p = precision[0, :, class_index, 0, -1]
    return None if (p < 0).all() else [round(float(v), 4) for v in p]


def evaluate_detections(dataset: DetectionDataset, detections: list[ImageDetections],
                        pr_curves: bool = False) -> dict[str, Any]:
    """Evaluate against the dataset's boxes. A model that outputs nothing is flagged, not scored 0 silently.

    `pr_curves` adds "pr_curves50": each class's precision-recall curve at IoU 0.5 (101 points a class)."""
    results = to_coco_results(dataset, detections)
    metrics: dict[str, Any] = {
        "images": len(dataset.images),
        "detections": len(results),
    }
    if not results:
        metrics.update(map=0.0, ap50=0.0, ap75=0.0, per_class_ap={n: 0.0 for n in dataset.class_names},
                       per_class_ap50={n: 0.0 for n in dataset.class_names},
                       warning="the model produced no detections above the score threshold")
        if pr_curves:
            metrics["pr_curves50"] = {n: [0.0] * 101 for n in dataset.class_names}
        return metrics
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = dataset.to_coco()
        gt.createIndex()
        dt = gt.loadRes(results)
        evaluator = COCOeval(gt, dt, iouType="bbox")
        evaluator.params.imgIds = [im.id for im in dataset.images]
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = evaluator.stats
    precision = evaluator.eval["precision"]
    cat_index = {cid: i for i, cid in enumerate(evaluator.params.catIds)}
    per_class, per_class50, curves = {}, {}, {}
    for name, cid in zip(dataset.class_names, dataset.category_ids):
        index = cat_index.get(cid)
        per_class[name] = _class_ap(precision, index) if index is not None else None  # None: no ground truth
        per_class50[name] = _class_ap(precision, index, 0) if index is not None else None
        curves[name] = _pr_curve50(precision, index) if index is not None else None
    metrics.update(
        map=max(float(stats[0]), 0.0),
        ap50=max(float(stats[1]), 0.0),
        ap75=max(float(stats[2]), 0.0),
        per_class_ap=per_class,
        per_class_ap50=per_class50,
    )
    if pr_curves:
        metrics["pr_curves50"] = curves
    return metrics


def evaluate_results(dataset: DetectionDataset, results) -> dict[str, Any]:
    """COCO metrics of DetectionResults (an ONNX model's, image by image, in `dataset.images` order)."""
    return evaluate_detections(dataset, [
        ImageDetections(record.id, np.array([d.box for d in r.detections], np.float32).reshape(-1, 4),
                        np.array([d.score for d in r.detections], np.float32),
                        np.array([d.label_id for d in r.detections], np.int64))
        for record, r in zip(dataset.images, results)])
