"""Datasets and samplers that feed torchvision detectors; decoding and augmentation run in workers."""

from __future__ import annotations

import math
from typing import Iterator

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler

from artdet.detector.dataset import DetectionDataset
from artdet.detector.images import DEFAULT_MAX_PIXELS, ImageSize, decode_image


def shrink_to_fit(image: np.ndarray, max_side: int | None) -> tuple[np.ndarray, float]:
    """Downscale so the longest side is at most `max_side`; returns (image, scale applied)."""
    height, width = image.shape[:2]
    if not max_side or max(height, width) <= max_side:
        return image, 1.0
    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))
    return resized, size[0] / width


def to_tensor(image: np.ndarray) -> torch.Tensor:
    if not image.flags.writeable:  # arrays viewed from Pillow are read-only
        image = image.copy()
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)


class TorchDetectionDataset(Dataset):
    """Yields (CHW float image in [0, 1], target); target boxes are in the (possibly shrunk) image.

    Augmentation randomness depends only on (seed, epoch, index), so a resumed run sees the same images.
    """

    def __init__(self, dataset: DetectionDataset, transform=None, max_side: int | None = None,
                 seed: int = 0, max_pixels: int = DEFAULT_MAX_PIXELS):
        self.dataset = dataset
        self.transform = transform
        self.max_side = max_side
        self.seed = seed
        self.max_pixels = max_pixels
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset.images)

    def _draft_size(self, size: ImageSize) -> tuple[int, int] | None:
        factor = self.max_side / max(size.width, size.height) if self.max_side else 1.0
        return (math.ceil(size.width * factor), math.ceil(size.height * factor)) if factor < 1 else None

    def __getitem__(self, index: int):
        record = self.dataset.images[index]
        image = decode_image(record.path, self.max_pixels, needed_size=self._draft_size)
        scale_x, scale_y = image.shape[1] / record.width, image.shape[0] / record.height
        image, shrink = shrink_to_fit(image, self.max_side)
        boxes = [b for b in self.dataset.boxes(record.id) if not b.iscrowd]
        coords = np.array([b.box for b in boxes], dtype=np.float32).reshape(-1, 4)
        coords *= np.array([scale_x, scale_y, scale_x, scale_y], dtype=np.float32) * shrink
        coords[:, 0::2] = coords[:, 0::2].clip(0, image.shape[1])
        coords[:, 1::2] = coords[:, 1::2].clip(0, image.shape[0])
        labels = [b.label for b in boxes]
        scale = image.shape[1] / record.width
        if self.transform is not None:
            seed = int(np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(1)[0])
            self.transform.set_random_seed(seed)
            out = self.transform(image=image, bboxes=coords, labels=labels)
            image, coords, labels = out["image"], np.asarray(out["bboxes"], np.float32).reshape(-1, 4), out["labels"]
        target = {
            "boxes": torch.from_numpy(coords),
            "labels": torch.as_tensor(np.asarray(labels, dtype=np.int64).reshape(-1)),
            "image_id": record.id,
            "scale": scale,  # evaluation maps boxes back to the original image with it
        }
        return to_tensor(image), target


def collate(batch):
    return tuple(zip(*batch))


class GroupedBatchSampler(Sampler[list[int]]):
    """Shuffled, rank-sharded batches of images with the same orientation (landscape / portrait).

    Every rank yields ceil(n / world / batch) batches, so DistributedDataParallel steps stay in lockstep.
    """

    def __init__(self, aspect_ratios: list[float], batch_size: int, seed: int = 0, rank: int = 0,
                 world_size: int = 1, group_by_aspect: bool = True):
        self.groups = [int(r >= 1.0) if group_by_aspect else 0 for r in aspect_ratios]
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _shard(self) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(len(self.groups), generator=generator).tolist()
        per_rank = math.ceil(len(order) / self.world_size)
        order += order[: per_rank * self.world_size - len(order)]
        return order[self.rank::self.world_size]

    def __iter__(self) -> Iterator[list[int]]:
        buckets: dict[int, list[int]] = {}
        leftovers: list[int] = []
        for index in self._shard():
            bucket = buckets.setdefault(self.groups[index], [])
            bucket.append(index)
            if len(bucket) == self.batch_size:
                yield list(bucket)
                bucket.clear()
        for bucket in buckets.values():
            leftovers.extend(bucket)
        for start in range(0, len(leftovers), self.batch_size):
            yield leftovers[start:start + self.batch_size]

    def __len__(self) -> int:
        return math.ceil(math.ceil(len(self.groups) / self.world_size) / self.batch_size)


def train_loader(dataset: TorchDetectionDataset, batch_size: int, workers: int, seed: int, rank: int = 0,
                 world_size: int = 1, group_by_aspect: bool = True) -> DataLoader:
    ratios = [im.width / im.height for im in dataset.dataset.images]
    sampler = GroupedBatchSampler(ratios, batch_size, seed, rank, world_size, group_by_aspect)
    return DataLoader(dataset, batch_sampler=sampler, num_workers=workers, collate_fn=collate,
                      pin_memory=torch.cuda.is_available())


def eval_loader(dataset: TorchDetectionDataset, workers: int, batch_size: int = 1) -> DataLoader:
    """One image per forward pass, as in serving: batching pads images and shifts results slightly."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=collate)
