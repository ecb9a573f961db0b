"""Seeded train/validation split that puts every class on both sides when it can."""

from __future__ import annotations

import random

from artdet.detector.dataset import DetectionDataset


def split_dataset(dataset: DetectionDataset, val_fraction: float = 0.2, seed: int = 0):
    """Return (train, val). Classes are served rarest first, so each rare class gets an image on each side.

    A class that appears in a single image cannot be on both sides; it stays in training.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    rng = random.Random(seed)
    images = [im.id for im in dataset.images]
    rng.shuffle(images)
    labels_of = {i: {b.label for b in dataset.boxes(i)} for i in images}
    target_val = max(1, round(len(images) * val_fraction))
    val: set[int] = set()
    train: set[int] = set()

    counts = {label: sum(label in labels for labels in labels_of.values())
              for label in range(1, dataset.num_classes + 1)}
    for label in sorted(counts, key=lambda l: (counts[l], l)):
        holders = [i for i in images if label in labels_of[i]]
        if len(holders) < 2:
            train.update(holders)
            continue
        if not any(i in val for i in holders):
            val.add(next(i for i in holders if i not in train))
        if not any(i in train for i in holders):
            candidates = [i for i in holders if i not in val]
            if candidates:
                train.add(candidates[0])
    for image_id in images:
        if image_id in val or image_id in train:
            continue
        (val if len(val) < target_val else train).add(image_id)
    return dataset.subset(train), dataset.subset(val)
