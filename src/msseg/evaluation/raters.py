"""Agreement between raters: majority vote, STAPLE and pairwise Dice."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import numpy as np
import pandas as pd
import SimpleITK as sitk

from msseg.evaluation.voxel import dice


def majority_vote(masks: Sequence[np.ndarray]) -> np.ndarray:
    """Voxels marked by strictly more than half of the raters (ties are background)."""
    stack = np.stack([np.asarray(m, dtype=bool) for m in masks])
    return stack.sum(0) * 2 > len(masks)


def union(masks: Sequence[np.ndarray]) -> np.ndarray:
    """Voxels marked by at least one rater."""
    return np.logical_or.reduce([np.asarray(m, dtype=bool) for m in masks])


def staple(masks: Sequence[np.ndarray], threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """STAPLE consensus (Warfield et al., IEEE TMI 2004) via SimpleITK's implementation.

    Returns the consensus mask (probability ≥ ``threshold``) and the probability map.
    """
    images = [sitk.GetImageFromArray(np.asarray(m, dtype=np.uint8)) for m in masks]
    prob = sitk.GetArrayFromImage(sitk.STAPLE(images, 1.0))
    return prob >= threshold, prob


def consensus(masks: Sequence[np.ndarray], method: str = "majority") -> np.ndarray:
    """One mask from several raters: ``union``, ``majority`` or ``staple``."""
    if method == "union":
        return union(masks)
    if method == "majority":
        return majority_vote(masks)
    if method == "staple":
        return staple(masks)[0]
    raise ValueError(f"consensus {method!r}: must be union, majority or staple")


def pairwise_dice(masks: Sequence[np.ndarray], names: Sequence[str] | None = None) -> pd.DataFrame:
    """Dice between every pair of raters: one row per pair (rater_a, rater_b, dice)."""
    names = list(names) if names is not None else [f"rater{i + 1}" for i in range(len(masks))]
    rows = [
        {"rater_a": names[i], "rater_b": names[j],
         "dice": dice(np.asarray(masks[i], bool), np.asarray(masks[j], bool))}
        for i, j in combinations(range(len(masks)), 2)
    ]
    return pd.DataFrame(rows, columns=["rater_a", "rater_b", "dice"])
