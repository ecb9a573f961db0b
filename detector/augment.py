"""Box-safe augmentation with albumentations, including looks that artworks have (grey, blur, posterized)."""

from __future__ import annotations

import albumentations as A

from artdet.detector.config import AugmentConfig


def build_train_transform(config: AugmentConfig) -> A.Compose | None:
    if not config.enabled:
        return None
    candidates = [
        (config.hflip, lambda p: A.HorizontalFlip(p=p)),
        (config.scale_crop, lambda p: A.OneOf([
            A.BBoxSafeRandomCrop(erosion_rate=0.2, p=1.0),
            A.RandomScale(scale_limit=(-0.3, 0.2), p=1.0),
        ], p=p)),
        (config.color_jitter, lambda p: A.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.05, p=p)),
        (config.grayscale, lambda p: A.ToGray(p=p)),
        (config.blur, lambda p: A.GaussianBlur(blur_limit=(3, 7), p=p)),
        (config.jpeg, lambda p: A.ImageCompression(quality_range=(30, 90), p=p)),
        (config.posterize, lambda p: A.Posterize(num_bits=(3, 5), p=p)),
        (config.clahe, lambda p: A.CLAHE(clip_limit=3.0, p=p)),
    ]
    transforms = [make(p) for p, make in candidates if p > 0]
    if not transforms:
        return None
    return A.Compose(
        transforms,
        bbox_params=A.BboxParams(format="pascal_voc", label_fields=["labels"], min_visibility=0.3, clip=True),
    )
