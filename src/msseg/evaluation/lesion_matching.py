"""Lesion-wise detection metrics with the matching rules of the published papers.

Design notes: docs/explanation/design-notes.md#mssegevaluationlesion_matching.
"""

from __future__ import annotations

from dataclasses import dataclass

import cc3d
import numpy as np

MATCHING_RULES = ("published", "symmetric")


def label_lesions(mask: np.ndarray, connectivity: int = 6) -> tuple[np.ndarray, int]:
    """Connected components of a boolean 3D mask: (labels uint32, number of components)."""
    if connectivity not in (6, 18, 26):
        raise ValueError(f"connectivity must be 6, 18 or 26, got {connectivity}")
    labels, n = cc3d.connected_components(np.asarray(mask, dtype=bool), connectivity=connectivity,
                                          return_N=True)
    return labels, int(n)


@dataclass(frozen=True)
class LesionMatch:
    """Per-lesion overlap fractions and decisions for one (prediction, reference) pair."""

    ref_sizes: np.ndarray        # voxels per reference lesion (index 0 = lesion 1)
    pred_sizes: np.ndarray
    ref_overlap: np.ndarray      # |r ∩ P| / |r|
    pred_overlap: np.ndarray     # |p ∩ R| / |p|
    ref_tp: np.ndarray           # bool per reference lesion
    pred_tp: np.ndarray          # bool per predicted component (not a false positive)
    ref_labels: np.ndarray
    pred_labels: np.ndarray
    rule: str

    @property
    def n_ref(self) -> int:
        return int(self.ref_sizes.size)

    @property
    def n_pred(self) -> int:
        return int(self.pred_sizes.size)


def match_lesions(pred: np.ndarray, ref: np.ndarray, overlap: float = 0.1,
                  connectivity: int = 6, rule: str = "published") -> LesionMatch:
    """Label both masks and decide, per lesion, true positive or not (see module docstring)."""
    if rule not in MATCHING_RULES:
        raise ValueError(f"lesion matching rule must be one of {MATCHING_RULES}, got {rule!r}")
    pred = np.asarray(pred, dtype=bool)
    ref = np.asarray(ref, dtype=bool)
    ref_labels, n_ref = label_lesions(ref, connectivity)
    pred_labels, n_pred = label_lesions(pred, connectivity)
    # counting on foreground voxels only (masks are sparse), through flat indices
    ref_flat, pred_flat = _flat(ref_labels), _flat(pred_labels)
    ref_at, pred_at = np.flatnonzero(ref_flat), np.flatnonzero(pred_flat)
    both = ref_at[pred_flat[ref_at] > 0]   # voxels of R that are in P
    ref_sizes = np.bincount(ref_flat[ref_at], minlength=n_ref + 1)[1:]
    pred_sizes = np.bincount(pred_flat[pred_at], minlength=n_pred + 1)[1:]
    ref_hit = np.bincount(ref_flat[both], minlength=n_ref + 1)[1:]
    pred_hit = np.bincount(pred_flat[both], minlength=n_pred + 1)[1:]
    ref_overlap = ref_hit / np.maximum(ref_sizes, 1)
    pred_overlap = pred_hit / np.maximum(pred_sizes, 1)
    ref_tp = ref_overlap >= overlap
    pred_tp = pred_hit > 0 if rule == "published" else pred_overlap >= overlap
    return LesionMatch(ref_sizes, pred_sizes, ref_overlap, pred_overlap, ref_tp, pred_tp,
                       ref_labels, pred_labels, rule)


def _flat(labels: np.ndarray) -> np.ndarray:
    """The labels in C order as one axis (a view of connected-components-3d's C-ordered
    output)."""
    return np.ascontiguousarray(labels).reshape(-1)


def lesion_scores(match: LesionMatch) -> dict[str, float]:
    """Lesion-wise PPV, sensitivity, F1 and counts for a :class:`LesionMatch`."""
    n_ref, n_pred = match.n_ref, match.n_pred
    counts = {
        "n_ref_lesions": n_ref,
        "n_pred_lesions": n_pred,
        "lesion_count_abs_diff": abs(n_ref - n_pred),
        "lesion_tp": int(match.ref_tp.sum()),
        "lesion_fp": int((~match.pred_tp).sum()),
        "lesion_fn": int((~match.ref_tp).sum()),
    }
    if match.rule == "published":
        scores = _published_scores(counts["lesion_tp"], counts["lesion_fp"], counts["lesion_fn"],
                                   n_ref, n_pred)
    else:
        scores = _symmetric_scores(int(match.pred_tp.sum()), counts["lesion_tp"], n_ref, n_pred)
    return {**scores, **counts}


def _published_scores(tp: int, fp: int, fn: int, n_ref: int, n_pred: int) -> dict[str, float]:
    if n_ref == 0 and n_pred == 0:
        return {"lesion_ppv": 1.0, "lesion_sensitivity": 1.0, "lesion_f1": 1.0}
    if n_ref == 0:
        return {"lesion_ppv": 0.0, "lesion_sensitivity": 1.0, "lesion_f1": 0.0}
    if n_pred == 0:
        return {"lesion_ppv": 0.0, "lesion_sensitivity": 0.0, "lesion_f1": 0.0}
    return {
        "lesion_ppv": tp / (tp + fp) if tp + fp else 1.0,  # the fork's value (see above)
        "lesion_sensitivity": tp / (tp + fn),
        "lesion_f1": 2 * tp / (2 * tp + fp + fn),
    }


def _symmetric_scores(tp_pred: int, tp_ref: int, n_ref: int, n_pred: int) -> dict[str, float]:
    ppv = tp_pred / n_pred if n_pred else float("nan")
    sens = tp_ref / n_ref if n_ref else float("nan")
    if n_ref == 0 and n_pred == 0:
        f1 = 1.0
    elif n_ref == 0 or n_pred == 0 or ppv + sens == 0:
        f1 = 0.0
    else:
        f1 = 2 * ppv * sens / (ppv + sens)
    return {"lesion_ppv": ppv, "lesion_sensitivity": sens, "lesion_f1": f1}


def size_bin_labels(edges_mm3: tuple[float, ...]) -> list[str]:
    """Names of the volume bins ``[0, e1), [e1, e2), …, [en, ∞)`` in mm³."""
    bounds = [0.0, *edges_mm3, float("inf")]
    return [f"[{_fmt(lo)},{_fmt(hi)})" for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]


def size_bin_index(volumes_mm3: np.ndarray, edges_mm3: tuple[float, ...]) -> np.ndarray:
    """Index of the bin of each volume (see :func:`size_bin_labels`)."""
    return np.searchsorted(np.asarray(edges_mm3, dtype=float), volumes_mm3, side="right")


def _fmt(x: float) -> str:
    return "inf" if np.isinf(x) else f"{x:g}"
