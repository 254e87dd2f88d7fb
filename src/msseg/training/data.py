"""Training data: cases preprocessed in memory, contrast-weighted case sampling, patch sampling.

Design notes: docs/explanation/design-notes.md#mssegtrainingdata.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import cc3d
import numpy as np

from msseg import io
from msseg.data.index import Record
from msseg.errors import MssegError
from msseg.preprocess import intensity
from msseg.preprocess.orient import to_rpi
from msseg.preprocess.pipeline import preprocess_image, tube_box, working_spacing
from msseg.preprocess.plan import Plan
from msseg.preprocess.resample import resample_to_spacing
from msseg.preprocess.tube import Tube, centres_from_mask

REGION_CHANNEL = {"cord": 0, "lesion": 1}


def channels(plan: Plan) -> list[int]:
    """Indices into a case's (cord ∪ lesion, lesion) targets of the plan's output regions."""
    return [REGION_CHANNEL[r] for r in plan.regions]


LESION_SAMPLING = ("voxel", "lesion")


@dataclass(frozen=True)
class Case:
    name: str
    contrast: str
    image: np.ndarray    # float32, RPI, target spacing, z-scored
    regions: np.ndarray  # uint8 (2, X, Y, Z): cord ∪ lesion, lesion


def learn_intensity(images: list[np.ndarray], method: str) -> dict:
    """What ``normalize`` needs from the training set (empty for per-image z-scores)."""
    if method == "nyul":
        everywhere = [np.ones(d.shape, bool) for d in images]
        landmarks = intensity.learn_nyul(images, everywhere)
        mapped = [intensity.apply_nyul(d, landmarks, m) for d, m in zip(images, everywhere,
                                                                        strict=True)]
        n = sum(m.size for m in mapped)
        mean = sum(float(m.sum(dtype=np.float64)) for m in mapped) / n
        var = sum(float(((m - mean) ** 2).sum(dtype=np.float64)) for m in mapped) / n
        return {"landmarks": landmarks, "mean": mean, "std": float(np.sqrt(var))}
    if method == "quantile":
        return {"template": intensity.learn_quantile_template(images)}
    return {}


def consensus_lesion(record: Record, method: str, spacing, shape, box=None,
                     warp=None) -> np.ndarray:
    """The lesion label of a record: its lesion mask, or with ``method`` union / majority /
    staple and rater masks in ``record.raters``, their consensus (msseg.evaluation.raters)."""
    if method == "none" or not record.raters:
        return _mask(record.lesion, spacing, shape, box, warp)
    from msseg.evaluation import raters

    return raters.consensus([_mask(path, spacing, shape, box, warp) for path in record.raters],
                            method)


def load_case(record: Record, plan: Plan, consensus: str = "none") -> Case:
    image = io.load(record.image)
    warp = None
    if plan.frame == "straightened":   # straightened along the cord mask's centerline
        image, warp = _straightened(image, record)
    box = None
    if plan.frame == "centerline":  # resample only around the cord (0.5 mm iso is large)
        cord_rpi = to_rpi(io.load(record.cord)).data > 0.5
        if cord_rpi.any():
            box = tube_box(np.argwhere(cord_rpi)[:, :2], to_rpi(image), plan)
    work = preprocess_image(image, plan, box)
    spacing = working_spacing(work, plan)  # the exact spacing the image was resampled to
    cord = _mask(record.cord, spacing, work.shape, box, warp)
    lesion = consensus_lesion(record, consensus, spacing, work.shape, box, warp)
    regions = np.stack([cord | lesion, lesion]).astype(np.uint8)
    data = work.data
    if plan.frame == "centerline":
        tube = Tube.around(centres_from_mask(regions[0]), tuple(plan.patch_size[:2]))
        data, regions = tube.extract(data, float(data.min())), tube.extract(regions)
    return Case(record.image, record.contrast, data, regions)


def _straightened(image, record: Record):
    """The image straightened around its cord mask's centerline, and the same warp for its
    masks (linear interpolation, then ≥ 0.5, as the axial-T2w paper did)."""
    from msseg.preprocess import straighten as st

    if record.cord is None:
        raise MssegError(f"{record.image}: straightened training needs a cord mask")
    geometry = st.geometry_for(image, st.centerline_of_mask(io.load(record.cord)))
    return st.straighten_image(image, geometry, 1), lambda m: st.straighten_mask(m, geometry)


def _mask(path: str | None, spacing, shape, box=None, warp=None) -> np.ndarray:
    if path is None:
        return np.zeros(shape, bool)
    mask = io.load(path)
    rpi = to_rpi(warp(mask) if warp is not None else mask)
    rpi = rpi.with_data((rpi.data > 0.5).astype(np.uint8))
    if box is not None:
        rpi = rpi.crop(box)
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
    is centred on a lesion voxel instead of a cord voxel: any lesion voxel alike
    (``lesion_sampling = "voxel"``, so large lesions are seen most), or a lesion (26-connected
    component) drawn uniformly, then one of its voxels (``"lesion"``: a 5 mm³ lesion is the
    centre as often as a 5 ml one)."""

    def __init__(self, cases: Sequence[Case], plan: Plan, weights: np.ndarray,
                 foreground_fraction: float, jitter_fraction: float, seed: int,
                 lesion_share: float = 0.0, lesion_sampling: str = "voxel"):
        if lesion_sampling not in LESION_SAMPLING:
            raise ValueError(f"lesion_sampling {lesion_sampling!r}: one of {LESION_SAMPLING}")
        self.cases, self.plan, self.weights = list(cases), plan, weights
        self.fg, self.jitter, self.lesion_share = foreground_fraction, jitter_fraction, lesion_share
        self.rng = np.random.default_rng(seed)
        self.channels = channels(plan)
        self.cord_voxels = [np.argwhere(c.regions[0]) for c in self.cases]
        self.lesion_voxels, self.lesion_starts = [], []
        for case in self.cases:
            voxels, starts = lesion_voxels(case.regions[1], lesion_sampling == "lesion")
            self.lesion_voxels.append(voxels)
            self.lesion_starts.append(starts)

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
            starts = self.lesion_starts[i]
            if starts is not None:          # one lesion, uniformly, then one of its voxels
                j = self.rng.integers(len(starts) - 1)
                voxels = voxels[starts[j]:starts[j + 1]]
        if voxels.size and self.rng.random() < self.fg:
            centre = voxels[self.rng.integers(len(voxels))].astype(float)
        else:
            centre = self.rng.uniform(0, shape - 1)
        patch = np.array(self.plan.patch_size)
        if self.plan.dims == 2:
            k = int(round(centre[2]))
            if self.plan.frame == "resize":  # the whole (resized) slice, as at inference
                centre = shape[:2] / 2
            else:
                centre = centre[:2] + self.rng.uniform(-1, 1, 2) * self.jitter * patch
            image, target = case.image[:, :, k], case.regions[:, :, :, k]
        else:
            centre = centre + self.rng.uniform(-1, 1, 3) * self.jitter * patch
            image, target = case.image, case.regions
        start = np.round(centre - patch / 2).astype(int)
        return (extract(image[None], start, patch, float(image.min())),
                extract(target[self.channels], start, patch, 0))


def lesion_voxels(lesion: np.ndarray, per_lesion: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """The lesion voxels (N × dims); with ``per_lesion``, grouped by 26-connected component
    and the start of each group (plus N at the end), else None."""
    if not per_lesion:
        return np.argwhere(lesion), None
    labels = cc3d.connected_components(np.asarray(lesion) > 0, connectivity=26)
    voxels = np.argwhere(labels)
    order = np.argsort(labels[tuple(voxels.T)], kind="stable")
    counts = np.bincount(labels[tuple(voxels.T)])[1:]
    return voxels[order], np.concatenate([[0], np.cumsum(counts[counts > 0])])


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
