"""Data augmentation with MONAI transforms: spatial on image and target, intensity on the image
only. Applied per sample to channel-first arrays. Profiles:

Design notes: docs/explanation/design-notes.md#mssegtrainingaugment.
"""

from __future__ import annotations

import numpy as np
from monai.transforms import (
    Compose,
    MapTransform,
    Rand2DElasticd,
    RandAdjustContrastd,
    RandAffined,
    RandBiasFieldd,
    RandFlipd,
    RandGaussianNoised,
    RandGaussianSmoothd,
    Randomizable,
    RandScaleIntensityd,
    RandScaleIntensityFixedMeand,
    RandSimulateLowResolutiond,
)
from scipy import ndimage


class RandLesionEdged(Randomizable, MapTransform):
    """With probability ``prob``, erode or dilate (equally likely) the lesion channel of the
    label by one voxel (3D cross). An erosion that would delete a lesion entirely is skipped."""

    def __init__(self, key: str, channel: int, prob: float = 0.3):
        MapTransform.__init__(self, (key,))
        self.channel, self.prob = channel, prob
        self._do, self._dilate = False, False

    def randomize(self, data=None) -> None:
        self._do = self.R.random() < self.prob
        self._dilate = self.R.random() < 0.5

    def __call__(self, data):
        self.randomize()
        if not self._do:
            return data
        out = dict(data)
        label = out[self.keys[0]]
        label = (label.detach().cpu().numpy() if hasattr(label, "detach")
                 else np.asarray(label)).copy()
        lesion = label[self.channel] > 0.5
        if lesion.any():
            changed = (ndimage.binary_dilation(lesion) if self._dilate
                       else ndimage.binary_erosion(lesion))
            if changed.any():
                label[self.channel] = changed
        out[self.keys[0]] = label
        return out


def build_augmentation(dims: int, seed: int, profile: str = "nnunet",
                       lesion_channel: int | None = None) -> Compose:
    if profile == "cnn1":
        transforms = _cnn1(dims)
    elif profile == "cnn2":
        transforms = _cnn2(dims, lesion_channel)
    elif profile == "scanner":
        transforms = _scanner(dims)
    else:
        transforms = _nnunet(dims)
    transforms.set_random_state(seed)
    return transforms


def _cnn1(dims: int) -> Compose:
    keys, modes = ("image", "label"), ("bilinear", "nearest")
    rotate = (np.radians(20),) if dims == 2 else (0.0, 0.0, np.radians(20))
    spatial = [RandAffined(keys, prob=0.5, rotate_range=rotate, translate_range=(10,) * dims,
                           mode=modes, padding_mode="border"),
               RandFlipd(keys, prob=0.5, spatial_axis=0), RandFlipd(keys, prob=0.5,
                                                                    spatial_axis=1)]
    if dims == 2:
        spatial.append(Rand2DElasticd(keys, spacing=(24, 24), magnitude_range=(1, 3), prob=0.3,
                                      mode=modes, padding_mode="border"))
    return Compose(spatial)


def _cnn2(dims: int, lesion_channel: int | None) -> Compose:
    keys = ("image", "label")
    transforms = [RandFlipd(keys, prob=0.5, spatial_axis=a) for a in range(dims)]
    if lesion_channel is not None:
        transforms.append(RandLesionEdged("label", lesion_channel, prob=0.3))
    return Compose(transforms)


def _nnunet(dims: int) -> Compose:
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
    return transforms


def _scanner(dims: int) -> Compose:
    rotate = (np.pi / 12,) if dims == 2 else (0.0, 0.0, np.pi / 12)
    keys = ("image", "label")
    return Compose([
        RandAffined(keys, prob=0.3, rotate_range=rotate, scale_range=(0.15,) * dims,
                    mode=("bilinear", "nearest"), padding_mode="zeros"),
        RandFlipd(keys, prob=0.5, spatial_axis=0),
        RandBiasFieldd("image", prob=0.4, degree=3, coeff_range=(0.1, 0.4)),
        RandAdjustContrastd("image", prob=0.4, gamma=(0.5, 2.0)),
        RandScaleIntensityFixedMeand("image", prob=0.3, factors=0.35),
        RandScaleIntensityd("image", prob=0.3, factors=0.25),
        RandGaussianNoised("image", prob=0.25, std=0.1),
        RandGaussianSmoothd("image", prob=0.25, sigma_x=(0.5, 1.5), sigma_y=(0.5, 1.5),
                            sigma_z=(0.5, 1.5)),
        RandSimulateLowResolutiond("image", prob=0.3, zoom_range=(0.4, 1.0),
                                   upsample_mode="bilinear" if dims == 2 else "trilinear"),
    ])


def augment_batch(transforms: Compose, images: np.ndarray, targets: np.ndarray):
    out_i, out_t = [], []
    for image, target in zip(images, targets, strict=True):
        sample = transforms({"image": image, "label": target.astype(np.float32)})
        out_i.append(np.asarray(sample["image"], dtype=np.float32))
        out_t.append((np.asarray(sample["label"]) > 0.5).astype(np.float32))
    return np.stack(out_i), np.stack(out_t)
