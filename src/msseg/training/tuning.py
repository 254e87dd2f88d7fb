"""The probability threshold and minimum lesion volume of a model, chosen on validation data.

Design notes: docs/explanation/design-notes.md#mssegtrainingtuning.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from msseg.evaluation.engine import EvalOptions
from msseg.evaluation.lesion_matching import lesion_scores, match_lesions
from msseg.evaluation.voxel import dice
from msseg.image import union_bounding_box
from msseg.postprocess import THRESHOLD, PostprocessConfig, postprocess

THRESHOLDS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
MIN_VOLUMES_MM3 = (0.0, 3.0, 5.0, 10.0, 20.0)


def score_pair(probability: np.ndarray, reference: np.ndarray, spacing: Sequence[float],
               threshold: float, min_volume_mm3: float,
               cord_probability: np.ndarray | None = None) -> dict:
    """Dice and lesion metrics of ``probability`` thresholded and post-processed as inference
    does (with ``cord_probability``: restricted to the cord as for a cord model)."""
    pred = predicted_lesions(probability, spacing, threshold, min_volume_mm3, cord_probability)
    ref = np.asarray(reference, bool)
    options = EvalOptions()   # θ and connectivity as msseg evaluate's defaults
    scores = lesion_scores(match_lesions(pred, ref, options.overlap, options.connectivity,
                                         "symmetric"))
    return {"dice": dice(pred, ref), "lesion_f1": scores["lesion_f1"],
            "lesion_ppv": scores["lesion_ppv"],
            "lesion_sensitivity": scores["lesion_sensitivity"]}


def predicted_lesions(probability: np.ndarray, spacing: Sequence[float], threshold: float,
                      min_volume_mm3: float,
                      cord_probability: np.ndarray | None = None) -> np.ndarray:
    """The lesion mask ``msseg segment`` writes for these maps at (threshold, minimum volume)."""
    has_cord = cord_probability is not None
    config = PostprocessConfig(min_lesion_volume_mm3=min_volume_mm3,
                               largest_cord_component=has_cord,
                               restrict_lesions_to_cord=has_cord)
    cord = (cord_probability >= THRESHOLD if has_cord   # tuned: the lesion map's only
            else np.zeros(np.shape(probability), bool))
    return postprocess(cord, probability >= threshold, spacing, config)[1]


def tune_postprocessing(cases: Sequence[tuple],
                        thresholds: Sequence[float] = THRESHOLDS,
                        min_volumes_mm3: Sequence[float] = MIN_VOLUMES_MM3
                        ) -> tuple[dict, pd.DataFrame]:
    """(best pair, grid table) over ``cases`` = (probability, reference, spacing) triples, or
    (probability, reference, spacing, cord probability) for a model with a cord.
    The best pair: ``{"threshold", "min_lesion_volume_mm3", "score", ...}``."""
    if not cases:
        raise ValueError("tuning needs at least one validation case")
    lowest = min(thresholds)
    cases = [_in_box(case, lowest) for case in cases]
    rows = []
    for threshold in thresholds:
        for volume in min_volumes_mm3:
            per_case = pd.DataFrame([score_pair(*case[:3], threshold, volume, *case[3:])
                                     for case in cases])
            means = per_case.mean().to_dict()
            rows.append({"threshold": float(threshold), "min_lesion_volume_mm3": float(volume),
                         **means, "score": (means["dice"] + means["lesion_f1"]) / 2})
    table = pd.DataFrame(rows)
    return table.loc[table["score"].idxmax()].to_dict(), table


def _in_box(case: tuple, lowest: float) -> tuple:
    """``case`` cut to the box of every voxel any grid point can mark (maps ≥ the lowest
    threshold) and of the reference: the same scores, computed on far fewer voxels."""
    probability, reference, spacing, *cord = case
    box = union_bounding_box([probability >= lowest, np.asarray(reference, bool),
                              *(c >= lowest for c in cord if c is not None)])
    if box is None:
        box = (slice(0, 1),) * np.ndim(probability)
    return (probability[box], np.asarray(reference)[box], spacing,
            *(None if c is None else c[box] for c in cord))
