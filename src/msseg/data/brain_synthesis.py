"""Semi-synthetic brain FLAIR: real lesion masks inserted into a real FLAIR background, and
scanner-like intensity transforms that make datasets differ the way sites do.

Lesion intensities are modelled on the background's own real lesions: for each real lesion the
ratio of its mean FLAIR intensity to the median of the surrounding normal-appearing tissue (a
3-voxel shell outside it) is measured; an inserted lesion draws a ratio from those (with 10%
jitter), multiplies the local level of lesion-free tissue (Gaussian-weighted, σ = 2 voxels) by
it, and is blended in with a partial-volume edge (Gaussian-smoothed mask, σ = 0.7 voxel) plus
the image's own noise level. Inserted lesions are kept inside the brain (non-zero voxels); the
label is the union of the background's real lesions and the inserted ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import cc3d
import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class LesionIntensity:
    ratios: np.ndarray     # lesion mean / surrounding tissue median, one per real lesion
    noise_std: float       # relative noise (std / median) of the brain's intensity


def measure_lesion_intensity(flair: np.ndarray, lesion: np.ndarray) -> LesionIntensity:
    brain = flair > 0
    labels, n = cc3d.connected_components(lesion > 0, connectivity=26, return_N=True)
    ratios = []
    for i, box in enumerate(ndimage.find_objects(labels), start=1):
        grown = tuple(slice(max(s.start - 4, 0), s.stop + 4) for s in box)
        own = labels[grown] == i
        shell = ndimage.binary_dilation(own, iterations=3) & ~(lesion[grown] > 0) & brain[grown]
        if own.sum() >= 3 and shell.sum() >= 10:
            ratios.append(float(flair[grown][own].mean() / np.median(flair[grown][shell])))
    if not ratios:
        raise ValueError("no lesion with enough surrounding tissue to measure its intensity")
    values = flair[brain]
    smooth = ndimage.median_filter(flair, size=3)[brain]
    noise = float(np.median(np.abs(values - smooth)) * 1.4826 / np.median(values))
    return LesionIntensity(np.asarray(ratios), noise)


def insert_lesions(flair: np.ndarray, own_lesion: np.ndarray, new_lesion: np.ndarray,
                   model: LesionIntensity, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(image, label): ``new_lesion``'s lesions painted into ``flair`` with modelled
    intensities; label = own ∪ inserted (inside the brain)."""
    rng = np.random.default_rng(seed)
    brain = flair > 0
    new = (new_lesion > 0) & brain
    labels = cc3d.connected_components(new, connectivity=26)
    ratio_map = np.zeros(flair.shape, np.float32)
    for i in range(1, int(labels.max()) + 1):
        ratio_map[labels == i] = rng.choice(model.ratios) * rng.uniform(0.9, 1.1)
    alpha = ndimage.gaussian_filter(new.astype(np.float32), 0.7)
    ratio = ndimage.grey_dilation(ratio_map, size=3)   # carries each lesion's ratio to its edge
    tissue = (brain & ~(own_lesion > 0)).astype(np.float32)   # normalised convolution:
    background = (ndimage.gaussian_filter(flair * tissue, 2.0) /  # local tissue level
                  np.maximum(ndimage.gaussian_filter(tissue, 2.0), 1e-3)).astype(np.float32)
    target = background * np.where(ratio > 0, ratio, 1.0)
    target += rng.normal(0, model.noise_std, flair.shape).astype(np.float32) * background
    out = (1 - alpha) * flair + alpha * target
    out = np.where(brain, out, 0).astype(np.float32)
    return out, ((own_lesion > 0) | new).astype(np.uint8)


@dataclass(frozen=True)
class ScannerLike:
    """x -> scale · (x / m)^gamma · m · bias(x) + noise, on brain voxels (m = brain median);
    bias is a smooth multiplicative field of relative amplitude ``bias``."""
    gamma: float = 1.0
    scale: float = 1.0
    bias: float = 0.0
    noise: float = 0.0

    def apply(self, flair: np.ndarray, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        brain = flair > 0
        m = float(np.median(flair[brain]))
        out = (np.clip(flair, 0, None) / m) ** self.gamma * m * self.scale
        if self.bias:
            coarse = rng.normal(0, 1, (4, 4, 4))
            field = ndimage.zoom(coarse, np.asarray(flair.shape) / 4, order=3)[
                tuple(slice(0, n) for n in flair.shape)]
            out *= 1 + self.bias * field / max(np.abs(field).max(), 1e-6)
        if self.noise:
            out += rng.normal(0, self.noise * m * self.scale, flair.shape)
        return np.where(brain, np.clip(out, 1e-3, None), 0).astype(np.float32)
