"""COCO metrics: a model that outputs nothing is reported as such, not scored 0 silently."""

from __future__ import annotations

import numpy as np

from artdet.detector.coco_eval import ImageDetections, evaluate_detections
from artdet.detector.dataset import load_coco
from artdet.tools.experiments.synthetic import write_shapes_dataset


def _ground_truth_as_detections(dataset) -> list[ImageDetections]:
    detections = []
    for image in dataset.images:
        boxes = dataset.boxes(image.id)
        detections.append(ImageDetections(image.id, np.array([b.box for b in boxes], dtype=np.float32).reshape(-1, 4),
                                          np.ones(len(boxes), dtype=np.float32),
                                          np.array([b.label for b in boxes], dtype=np.int64)))
    return detections


def test_empty_output_is_flagged_and_perfect_output_scores_one(tmp_path):
    dataset = load_coco(write_shapes_dataset(tmp_path, images=4))
    empty = evaluate_detections(dataset, [ImageDetections(im.id, np.zeros((0, 4)), np.zeros(0), np.zeros(0))
                                          for im in dataset.images])
    assert empty["detections"] == 0 and "no detections" in empty["warning"]
    perfect = evaluate_detections(dataset, _ground_truth_as_detections(dataset))
    assert "warning" not in perfect
    assert perfect["map"] == 1.0 and perfect["detections"] == sum(1 for _ in dataset.all_boxes())
