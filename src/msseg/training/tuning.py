"""The probability threshold and minimum lesion volume of a model, chosen on validation data.

A grid search over (threshold, minimum lesion volume) on the validation cases' native-space
lesion probabilities: each pair thresholds the lesion map (``p >= threshold``; a cord map at
0.5, as inference thresholds every map but the lesion's) and post-processes the masks as
``msseg segment`` does (:func:`msseg.postprocess.postprocess`: for a model with a cord, given its
cord probability, the largest cord component and lesions within 2 mm of it; then connected
components (26-connectivity) smaller than the minimum volume removed) and scores the result
against the references. The score is the mean over cases of (Dice + lesion F1) / 2 — volume
overlap and detection weigh the same, so a small lesion found counts as much as a large one's
extra voxels; a lesion-free case scores 1 when nothing is left and 0 otherwise, so validation
cases without lesions weigh false positives (volume-wise specificity). Lesion F1 uses the
*symmetric* matching rule (θ = 0.1, :func:`msseg.evaluation.lesion_matching.match_lesions`):
under the published rule a low threshold that merges every lesion into one large component
scores F1 = 1 (each reference lesion is touched, the component touches the reference), which the
symmetric rule counts as one false positive. Ties go to the first pair in grid order (lowest
threshold, then smallest volume). Run it on validation data only: a threshold chosen on the test
data inflates the test score. The chosen pair is stored in the model's plan (``threshold``,
``min_lesion_volume_mm3``), which ``msseg segment`` applies by default.
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
