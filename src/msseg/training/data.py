"""Training data: cases preprocessed in memory, contrast-weighted case sampling, patch sampling.

Preprocessing of one case (also used at inference): reorient to RPI, resample to the plan's
spacing (in-plane only for 2D models; masks nearest-neighbour), z-score the image. Targets are
region-based: channel 0 = cord ∪ lesion, channel 1 = lesion.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from msseg import io
from msseg.data.index import Record
from msseg.image import Image
from msseg.preprocess.orient import to_rpi
from msseg.preprocess.resample import resample_to_spacing
from msseg.training.planning import Plan


@dataclass(frozen=True)
class Case:
    name: str
    contrast: str
    image: np.ndarray    # float32, RPI, target spacing, z-scored
    regions: np.ndarray  # uint8 (2, X, Y, Z): cord ∪ lesion, lesion


def zscore(data: np.ndarray) -> np.ndarray:
    data = data.astype(np.float32)
    return (data - data.mean()) / max(float(data.std()), 1e-6)


def working_spacing(image: Image, plan: Plan) -> tuple[float, float, float]:
    """Spacing of the network grid for this image: 2D models keep the slice thickness."""
    if plan.dims == 2:
        return (*plan.target_spacing, image.spacing[2])
    return tuple(plan.target_spacing)


def preprocess_image(image: Image, plan: Plan) -> Image:
    rpi = to_rpi(image)
    resampled = resample_to_spacing(rpi, working_spacing(rpi, plan), order=1)
    return resampled.with_data(zscore(resampled.data))


def load_case(record: Record, plan: Plan) -> Case:
    work = preprocess_image(io.load(record.image), plan)
    spacing = working_spacing(work, plan)  # the exact spacing the image was resampled to
    cord = _mask(record.cord, spacing, work.shape)
    lesion = _mask(record.lesion, spacing, work.shape)
    regions = np.stack([cord | lesion, lesion]).astype(np.uint8)
    return Case(record.image, record.contrast, work.data, regions)


def _mask(path: str | None, spacing, shape) -> np.ndarray:
    if path is None:
        return np.zeros(shape, bool)
    rpi = to_rpi(io.load(path))
    rpi = rpi.with_data((rpi.data > 0.5).astype(np.uint8))
    out = resample_to_spacing(rpi, spacing, order=0).data > 0
    if out.shape != shape:
        raise ValueError(f"{path}: mask grid {out.shape} does not match its image {shape}")
    return out


def crop_to_cord(case: Case, margin: int = 32) -> Case:
    """The case cut to its cord's bounding box plus ``margin`` voxels in-plane (validation:
    scores inside a cord-centred field of view, as `msseg segment` will crop)."""
    hits = np.argwhere(case.regions[0])
    if hits.size == 0:
        return case
    lo = np.maximum(hits.min(0) - [margin, margin, 0], 0)
    hi = hits.max(0) + [margin, margin, 0] + 1
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    return Case(case.name, case.contrast, case.image[box], case.regions[(slice(None), *box)])


def case_weights(contrasts: Sequence[str], scheme: str) -> np.ndarray:
    """Sampling probability per case: uniform, or ∝ 1/√(number of cases of its contrast)."""
    if scheme == "uniform":
        w = np.ones(len(contrasts))
    elif scheme == "contrast-sqrt":
        counts = Counter(contrasts)
        w = np.array([1 / np.sqrt(counts[c]) for c in contrasts])
    else:
        raise ValueError(f"unknown sampling scheme {scheme!r}")
    return w / w.sum()


class PatchSampler:
    """Draws (image, target) patches: cord-centred with jitter, or anywhere at random.

    With ``lesion_share`` > 0, that share of the foreground patches of scans that have lesions
    is centred on a lesion voxel instead of a cord voxel."""

    def __init__(self, cases: Sequence[Case], plan: Plan, weights: np.ndarray,
                 foreground_fraction: float, jitter_fraction: float, seed: int,
                 lesion_share: float = 0.0):
        self.cases, self.plan, self.weights = list(cases), plan, weights
        self.fg, self.jitter, self.lesion_share = foreground_fraction, jitter_fraction, lesion_share
        self.rng = np.random.default_rng(seed)
        self.cord_voxels = [np.argwhere(c.regions[0]) for c in self.cases]
        self.lesion_voxels = [np.argwhere(c.regions[1]) for c in self.cases]

    def batch(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        images, targets = zip(*(self.sample() for _ in range(size)), strict=True)
        return np.stack(images), np.stack(targets)

    def draw_case(self) -> int:
        return int(self.rng.choice(len(self.cases), p=self.weights))

    def sample(self) -> tuple[np.ndarray, np.ndarray]:
        i = self.draw_case()
        case = self.cases[i]
        shape = np.array(case.image.shape)
        voxels = self.cord_voxels[i]
        if self.lesion_voxels[i].size and self.rng.random() < self.lesion_share:
            voxels = self.lesion_voxels[i]  # oversample the rare class, as nnU-Net does
        if voxels.size and self.rng.random() < self.fg:
            centre = voxels[self.rng.integers(len(voxels))].astype(float)
        else:
            centre = self.rng.uniform(0, shape - 1)
        patch = np.array(self.plan.patch_size)
        if self.plan.dims == 2:
            k = int(round(centre[2]))
            centre = centre[:2] + self.rng.uniform(-1, 1, 2) * self.jitter * patch
            image, target = case.image[:, :, k], case.regions[:, :, :, k]
        else:
            centre = centre + self.rng.uniform(-1, 1, 3) * self.jitter * patch
            image, target = case.image, case.regions
        start = np.round(centre - patch / 2).astype(int)
        return (extract(image[None], start, patch, float(image.min())),
                extract(target, start, patch, 0))


def extract(array: np.ndarray, start: np.ndarray, size: np.ndarray, fill) -> np.ndarray:
    """Channel-first crop ``array[:, start:start+size]``, padded with ``fill`` outside."""
    out = np.full((array.shape[0], *size), fill, dtype=array.dtype)
    src, dst = [slice(None)], [slice(None)]
    for s, n, dim in zip(start, size, array.shape[1:], strict=True):
        lo, hi = max(s, 0), min(s + n, dim)
        if hi <= lo:
            return out
        src.append(slice(lo, hi))
        dst.append(slice(lo - s, hi - s))
    out[tuple(dst)] = array[tuple(src)]
    return out
