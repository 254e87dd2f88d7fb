"""Centerline accuracy: error in mm and localisation rate (Gros et al., NeuroImage 2019).

Both functions take arrays in SCT's RPI orientation (axis 2 = inferior -> superior), so one
centerline point per axial slice ``k`` is compared with the reference on the same slice.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from msseg.preprocess.tube import centerline_from_mask

__all__ = ["centerline_from_mask", "centerline_mse_mm", "localisation_rate"]


def centerline_mse_mm(pred_points: np.ndarray, ref_points: np.ndarray,
                      spacing: Sequence[float]) -> float:
    """Centerline error in mm over slices where both centerlines are defined.

    ``MSE = sqrt(mean_k ‖(p_k − r_k) ⊙ (s_x, s_y)‖²)``, the root of the mean squared in-plane
    distance, as computed by SCT's centerline validation (``compute_mse``) and reported in mm
    by Gros et al. 2019 (published median 1.0 mm for the CNN). Points are (x, y) voxel indices
    per slice, ``NaN`` where a slice has none. Empty rule: NaN when no slice has both points.
    """
    both = ~np.isnan(pred_points).any(1) & ~np.isnan(ref_points).any(1)
    if not both.any():
        return float("nan")
    delta = (pred_points[both] - ref_points[both]) * np.asarray(spacing[:2], dtype=float)
    return float(np.sqrt((delta**2).sum(1).mean()))


def localisation_rate(pred_points: np.ndarray, ref_mask: np.ndarray) -> float:
    """Fraction of reference-cord slices whose predicted point falls inside the reference mask.

    ``LR = |{k : R_k ≠ ∅ and round(p_k) ∈ R_k}| / |{k : R_k ≠ ∅}|``; a slice with a reference
    cord but no predicted point counts as missed. Empty rule: NaN when the reference is empty.
    """
    ref_mask = np.asarray(ref_mask, dtype=bool)
    slices = np.flatnonzero(ref_mask.any(axis=(0, 1)))
    if slices.size == 0:
        return float("nan")
    hits = 0
    for k in slices:
        point = pred_points[k]
        if np.isnan(point).any():
            continue
        i, j = np.round(point).astype(int)
        inside = 0 <= i < ref_mask.shape[0] and 0 <= j < ref_mask.shape[1]
        hits += bool(inside and ref_mask[i, j, k])
    return hits / slices.size
