"""Lesion-wise agreement of two lesion masks of the same scan, where neither is the truth.

Design notes: docs/explanation/design-notes.md#mssegevaluationagreement.
"""

from __future__ import annotations

from collections.abc import Iterable

import cc3d
import numpy as np
import pandas as pd

SCAN_COLUMNS = ("n_a", "n_b", "found_a", "found_b", "volume_a_mm3", "volume_b_mm3",
                "intersection_mm3", "dice", "outside_cord_a", "outside_cord_b")
LESION_COLUMNS = ("model", "lesion_id", "volume_mm3", "overlap_fraction", "found_by_other",
                  "outside_cord")


def lesion_agreement(a: np.ndarray, b: np.ndarray, voxel_mm3: float,
                     cord: np.ndarray | None = None, overlap: float = 0.0
                     ) -> tuple[dict, pd.DataFrame]:
    """Agreement of boolean masks ``a`` and ``b`` (same grid): the scan's row (see module) and
    one row per lesion of each (``model`` "a" or "b")."""
    if not 0 <= overlap <= 1:
        raise ValueError(f"overlap must be in [0, 1], got {overlap}")
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if a.shape != b.shape or (cord is not None and np.shape(cord) != a.shape):
        raise ValueError("masks must have the same shape")
    cord = None if cord is None else np.asarray(cord, dtype=bool)
    lesions = pd.concat([_lesions(a, b, cord, voxel_mm3, overlap, "a"),
                         _lesions(b, a, cord, voxel_mm3, overlap, "b")], ignore_index=True)
    both = int(np.count_nonzero(a & b))
    n_a, n_b = int(np.count_nonzero(a)), int(np.count_nonzero(b))
    by = {m: lesions[lesions.model == m] for m in ("a", "b")}
    row = {
        "n_a": len(by["a"]), "n_b": len(by["b"]),
        "found_a": int(by["a"].found_by_other.sum()),
        "found_b": int(by["b"].found_by_other.sum()),
        "volume_a_mm3": n_a * voxel_mm3, "volume_b_mm3": n_b * voxel_mm3,
        "intersection_mm3": both * voxel_mm3,
        "dice": 1.0 if n_a + n_b == 0 else 2.0 * both / (n_a + n_b),
        "outside_cord_a": _outside(by["a"], cord), "outside_cord_b": _outside(by["b"], cord),
    }
    return row, lesions


def _lesions(mask: np.ndarray, other: np.ndarray, cord: np.ndarray | None, voxel_mm3: float,
             overlap: float, model: str) -> pd.DataFrame:
    labels, n = cc3d.connected_components(mask, connectivity=26, return_N=True)
    if n == 0:
        return pd.DataFrame(columns=list(LESION_COLUMNS))
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    shared = np.bincount(labels[other], minlength=n + 1)[1:]
    fraction = shared / sizes
    rows = {"model": model, "lesion_id": np.arange(1, n + 1), "volume_mm3": sizes * voxel_mm3,
            "overlap_fraction": fraction,
            "found_by_other": (shared >= 1) & (fraction >= overlap)}
    if cord is None:
        rows["outside_cord"] = np.nan
    else:
        in_cord = np.bincount(labels[cord], minlength=n + 1)[1:]
        rows["outside_cord"] = in_cord / sizes < 0.5
    return pd.DataFrame(rows, columns=list(LESION_COLUMNS))


def _outside(lesions: pd.DataFrame, cord: np.ndarray | None) -> float:
    return float("nan") if cord is None else int(lesions.outside_cord.astype(bool).sum())


def pool(rows: Iterable[dict]) -> dict:
    """One cohort row from per-scan rows (see module); outside-the-cord counts sum the scans
    that had a cord mask (NaN when none had)."""
    table = pd.DataFrame(list(rows), columns=list(SCAN_COLUMNS)).astype(float)
    total = {c: float(table[c].sum()) for c in SCAN_COLUMNS}
    volume = total["volume_a_mm3"] + total["volume_b_mm3"]
    return {
        "scans": len(table), "n_a": int(total["n_a"]), "n_b": int(total["n_b"]),
        "share_a_found": _share(total["found_a"], total["n_a"]),
        "share_b_found": _share(total["found_b"], total["n_b"]),
        "volume_a_mm3": total["volume_a_mm3"], "volume_b_mm3": total["volume_b_mm3"],
        "dice": 1.0 if volume == 0 else 2.0 * total["intersection_mm3"] / volume,
        "outside_cord_a": float(table.outside_cord_a.sum(min_count=1)),
        "outside_cord_b": float(table.outside_cord_b.sum(min_count=1)),
    }


def _share(found: float, n: float) -> float:
    return float("nan") if n == 0 else found / n
