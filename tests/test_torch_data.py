"""Samplers and augmentation that feed the detector."""

from __future__ import annotations

import numpy as np
import torch

from artdet.detector.augment import build_train_transform
from artdet.detector.config import AugmentConfig
from artdet.detector.dataset import load_coco
from artdet.detector.torch_data import GroupedBatchSampler, TorchDetectionDataset


def test_grouped_batches_cover_each_rank_in_lockstep():
    ratios = [1.5 if i % 3 else 0.7 for i in range(23)]
    seen = []
    lengths = []
    for rank in range(2):
        sampler = GroupedBatchSampler(ratios, batch_size=4, seed=1, rank=rank, world_size=2)
        sampler.set_epoch(3)
        batches = list(sampler)
        lengths.append(len(batches))
        assert len(batches) == len(sampler)
        same_orientation = [b for b in batches if len({ratios[i] >= 1 for i in b}) == 1]
        assert len(same_orientation) >= len(batches) - 1
        seen.extend(i for b in batches for i in b)
    assert lengths[0] == lengths[1]
    assert set(seen) == set(range(23))
    first = list(GroupedBatchSampler(ratios, 4, seed=1))
    assert first == list(GroupedBatchSampler(ratios, 4, seed=1))
    shuffled = GroupedBatchSampler(ratios, 4, seed=1)
    shuffled.set_epoch(1)
    assert list(shuffled) != first


def test_augmentation_keeps_boxes_valid_and_is_repeatable(shapes):
    dataset = load_coco(shapes["train"])
    config = AugmentConfig(hflip=0.5, scale_crop=1.0, color_jitter=1.0, grayscale=0.5, blur=0.5, jpeg=0.5,
                           posterize=0.5, clahe=0.5)
    data = TorchDetectionDataset(dataset, build_train_transform(config), max_side=128, seed=4)
    for index in range(len(data)):
        image, target = data[index]
        height, width = image.shape[1:]
        boxes = target["boxes"]
        assert len(boxes) == len(target["labels"])
        assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
        assert (boxes[:, 0::2] <= width).all() and (boxes[:, 1::2] <= height).all() and (boxes >= 0).all()
        assert max(height, width) <= 128 * 1.2 + 1
    again = data[2]
    assert torch.equal(again[0], data[2][0]) and torch.equal(again[1]["boxes"], data[2][1]["boxes"])
    data.set_epoch(1)
    assert not torch.equal(again[0], data[2][0])
    assert build_train_transform(AugmentConfig(enabled=False)) is None


def test_eval_items_scale_back_to_the_original_image(shapes):
    dataset = load_coco(shapes["train"])
    data = TorchDetectionDataset(dataset, transform=None, max_side=64)
    image, target = data[0]
    record = dataset.images[0]
    assert max(image.shape[1:]) == 64
    original = np.array(dataset.boxes(record.id)[0].box)
    assert np.allclose(target["boxes"][0].numpy() / target["scale"], original, atol=0.5)
