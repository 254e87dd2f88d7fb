"""Data augmentation with MONAI transforms (nnU-Net's set): spatial on image and target,
intensity on the image only. Applied per sample to channel-first arrays."""

from __future__ import annotations

import numpy as np
from monai.transforms import (
    Compose,
    RandAdjustContrastd,
    RandAffined,
    RandFlipd,
    RandGaussianNoised,
    RandGaussianSmoothd,
    RandScaleIntensityd,
    RandScaleIntensityFixedMeand,
    RandSimulateLowResolutiond,
)


def build_augmentation(dims: int, seed: int) -> Compose:
    rotate = (np.pi / 12,) if dims == 2 else (0.0, 0.0, np.pi / 12)  # in-plane rotation ±15°
    keys = ("image", "label")
    transforms = Compose([
        RandAffined(keys, prob=0.3, rotate_range=rotate, scale_range=(0.15,) * dims,
                    mode=("bilinear", "nearest"), padding_mode="zeros"),
        RandFlipd(keys, prob=0.5, spatial_axis=0),            # left-right
        RandGaussianNoised("image", prob=0.1, std=0.1),
        RandGaussianSmoothd("image", prob=0.2, sigma_x=(0.5, 1.0), sigma_y=(0.5, 1.0),
                            sigma_z=(0.5, 1.0)),
        RandScaleIntensityd("image", prob=0.15, factors=0.25),           # brightness
        RandScaleIntensityFixedMeand("image", prob=0.15, factors=0.25),  # contrast
        RandSimulateLowResolutiond("image", prob=0.25, zoom_range=(0.5, 1.0),
                                   upsample_mode="bilinear" if dims == 2 else "trilinear"),
        RandAdjustContrastd("image", prob=0.3, gamma=(0.7, 1.5)),         # gamma
    ])
    transforms.set_random_state(seed)
    return transforms


def augment_batch(transforms: Compose, images: np.ndarray, targets: np.ndarray):
    out_i, out_t = [], []
    for image, target in zip(images, targets, strict=True):
        sample = transforms({"image": image, "label": target.astype(np.float32)})
        out_i.append(np.asarray(sample["image"], dtype=np.float32))
        out_t.append((np.asarray(sample["label"]) > 0.5).astype(np.float32))
    return np.stack(out_i), np.stack(out_t)
