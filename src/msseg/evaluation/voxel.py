"""Voxel-wise overlap, volume and surface-distance metrics (MetricsReloaded definitions).

Design notes: docs/explanation/design-notes.md#mssegevaluationvoxel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from msseg.image import union_bounding_box


def dice(pred: np.ndarray, ref: np.ndarray) -> float:
    """Dice similarity coefficient.

    ``DSC = 2|P ∩ R| / (|P| + |R|)`` (Dice 1945; MetricsReloaded ``dsc``).
    Empty rule: both empty -> 1.0; exactly one empty -> 0.0.
    """
    n_p, n_r = int(np.count_nonzero(pred)), int(np.count_nonzero(ref))
    if n_p + n_r == 0:
        return 1.0
    return 2.0 * int(np.count_nonzero(pred & ref)) / (n_p + n_r)


def relative_volume_error(pred: np.ndarray, ref: np.ndarray) -> float:
    """Relative volume error ``RVE = (|P| - |R|) / |R|`` (MetricsReloaded ``rel_vol_error``).

    Empty rule: both empty -> 0.0; reference empty and prediction not -> NaN.
    """
    n_p, n_r = int(np.count_nonzero(pred)), int(np.count_nonzero(ref))
    if n_r == 0:
        return 0.0 if n_p == 0 else float("nan")
    return (n_p - n_r) / n_r


def surface(mask: np.ndarray) -> np.ndarray:
    """Surface voxels: ``mask`` minus its 6-connected erosion (image edge counts as outside).

    Equal to ``mask & ~scipy.ndimage.binary_erosion(mask)``; computed with shifted views of a
    zero-padded copy, which is several times faster than the generic erosion.
    """
    mask = np.asarray(mask, dtype=bool)
    core = (slice(1, -1),) * mask.ndim
    padded = np.zeros(tuple(n + 2 for n in mask.shape), bool)   # (np.pad is slower)
    padded[core] = mask
    interior = mask.copy()
    for axis in range(mask.ndim):
        for start in (0, 2):
            shifted = list(core)
            shifted[axis] = slice(start, start + mask.shape[axis])
            interior &= padded[tuple(shifted)]
    return mask & ~interior


@dataclass(frozen=True)
class SurfaceDistances:
    """Directed surface distances (mm): from each surface voxel of P to R's surface, and back."""

    pred_to_ref: np.ndarray
    ref_to_pred: np.ndarray

    @classmethod
    def compute(cls, pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float],
                cropped: bool = False) -> SurfaceDistances:
        """``cropped``: the masks are already cut to the box of ``P ∪ R`` plus one voxel."""
        pred, ref = np.asarray(pred, bool), np.asarray(ref, bool)
        box = tuple(slice(None) for _ in pred.shape) if cropped else union_bounding_box(
            [pred, ref], margin=1)
        if box is None:
            empty = np.zeros(0)
            return cls(empty, empty)
        sp, sr = surface(pred[box]), surface(ref[box])
        if not sp.any() or not sr.any():
            # One side has no surface: distances are undefined (inf), the other side is empty.
            return cls(np.full(np.count_nonzero(sp), np.inf), np.full(np.count_nonzero(sr), np.inf))
        points_p, points_r = voxel_points(sp, spacing), voxel_points(sr, spacing)
        to_ref = _nearest_distance(points_r, points_p)
        to_pred = _nearest_distance(points_p, points_r)
        return cls(to_ref, to_pred)

    @property
    def both_present(self) -> bool:
        return self.pred_to_ref.size > 0 and self.ref_to_pred.size > 0

    def nsd(self, tolerance_mm: float) -> float:
        """See :func:`normalised_surface_distance`."""
        n = self.pred_to_ref.size + self.ref_to_pred.size
        if n == 0:
            return 1.0
        if not self.both_present:
            return 0.0
        within = np.count_nonzero(self.pred_to_ref <= tolerance_mm)
        within += np.count_nonzero(self.ref_to_pred <= tolerance_mm)
        return within / n

    def hd95(self) -> float:
        """See :func:`hausdorff95`."""
        if not self.both_present:
            return float("nan")
        return float(max(np.percentile(self.pred_to_ref, 95), np.percentile(self.ref_to_pred, 95)))

    def assd(self) -> float:
        """See :func:`average_symmetric_surface_distance`."""
        if not self.both_present:
            return float("nan")
        total = self.pred_to_ref.sum() + self.ref_to_pred.sum()
        return float(total / (self.pred_to_ref.size + self.ref_to_pred.size))


def voxel_points(mask: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """(n, ndim) positions in mm of a sparse mask's voxels (``np.argwhere(mask) * spacing``,
    through flat indices: 4–5x faster than argwhere's multi-dimensional nonzero)."""
    flat = np.flatnonzero(mask)
    index = np.unravel_index(flat, mask.shape)
    return np.column_stack(index) * np.asarray(spacing, dtype=np.float64)


def _nearest_distance(targets: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Euclidean distance from each query point to its nearest target point."""
    tree = cKDTree(targets, leafsize=32, balanced_tree=False, compact_nodes=False)  # fast build
    return tree.query(queries, k=1, workers=-1)[0]


def normalised_surface_distance(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float],
                                tolerance_mm: float = 1.0) -> float:
    """Normalised surface distance (surface Dice) at tolerance τ (Nikolov et al., JMIR 2021).

    ``NSD = (|{p ∈ S_P : d(p, S_R) ≤ τ}| + |{r ∈ S_R : d(r, S_P) ≤ τ}|) / (|S_P| + |S_R|)``,
    surfaces ``S`` as in the module docstring (MetricsReloaded ``nsd``).
    Empty rule: both empty -> 1.0; exactly one empty -> 0.0.
    """
    return SurfaceDistances.compute(pred, ref, spacing).nsd(tolerance_mm)


def hausdorff95(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float]) -> float:
    """95th-percentile Hausdorff distance in mm (MetricsReloaded ``hd_perc``).

    ``HD95 = max(P95{d(p, S_R) : p ∈ S_P}, P95{d(r, S_P) : r ∈ S_R})`` (numpy linear percentile).
    Empty rule: NaN when either mask is empty.
    """
    return SurfaceDistances.compute(pred, ref, spacing).hd95()


def average_symmetric_surface_distance(pred: np.ndarray, ref: np.ndarray,
                                       spacing: Sequence[float]) -> float:
    """Average symmetric surface distance in mm (MetricsReloaded ``assd``).

    ``ASSD = (Σ_{p ∈ S_P} d(p, S_R) + Σ_{r ∈ S_R} d(r, S_P)) / (|S_P| + |S_R|)``.
    Empty rule: NaN when either mask is empty.
    """
    return SurfaceDistances.compute(pred, ref, spacing).assd()
