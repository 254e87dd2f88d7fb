"""The probability threshold and minimum lesion volume of a model, chosen on validation data.

A grid search over (threshold, minimum lesion volume) on the validation cases' native-space
lesion probabilities: each pair thresholds the maps (``p >= threshold``), removes connected
components (26-connectivity) smaller than the minimum volume (as post-processing does at
inference) and scores the result against the references. The score is the mean over cases of
(Dice + lesion F1) / 2 — volume overlap and detection weigh the same, so a small lesion found
counts as much as a large one's extra voxels — lesion F1 with the *symmetric* matching rule
(θ = 0.1, :func:`msseg.evaluation.lesions.match_lesions`): under the published rule a low
threshold that merges every lesion into one large component scores F1 = 1 (each reference
lesion is touched, the component touches the reference), which the symmetric rule counts as
one false positive. Ties go to
the first pair in grid order (lowest threshold, then smallest volume). Run it on validation
data only: a threshold chosen on the test data inflates the test score. The chosen pair is
stored in the model's plan (``threshold``, ``min_lesion_volume_mm3``), which ``msseg segment``
applies by default.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from msseg.evaluation.engine import EvalOptions
from msseg.evaluation.lesions import lesion_scores, match_lesions
from msseg.evaluation.voxel import dice
from msseg.postprocess import remove_small_components

THRESHOLDS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
MIN_VOLUMES_MM3 = (0.0, 3.0, 5.0, 10.0, 20.0)


def score_pair(probability: np.ndarray, reference: np.ndarray, spacing: Sequence[float],
               threshold: float, min_volume_mm3: float) -> dict:
    """Dice and lesion metrics of ``probability`` thresholded and cleaned as inference does."""
    pred = remove_small_components(probability >= threshold, spacing, min_volume_mm3)
    ref = np.asarray(reference, bool)
    options = EvalOptions()   # θ and connectivity as msseg evaluate's defaults
    scores = lesion_scores(match_lesions(pred, ref, options.overlap, options.connectivity,
                                         "symmetric"))
    return {"dice": dice(pred, ref), "lesion_f1": scores["lesion_f1"],
            "lesion_ppv": scores["lesion_ppv"],
            "lesion_sensitivity": scores["lesion_sensitivity"]}


def tune_postprocessing(cases: Sequence[tuple[np.ndarray, np.ndarray, Sequence[float]]],
                        thresholds: Sequence[float] = THRESHOLDS,
                        min_volumes_mm3: Sequence[float] = MIN_VOLUMES_MM3
                        ) -> tuple[dict, pd.DataFrame]:
    """(best pair, grid table) over ``cases`` = (probability, reference, spacing) triples.
    The best pair: ``{"threshold", "min_lesion_volume_mm3", "score", ...}``."""
    if not cases:
        raise ValueError("tuning needs at least one validation case")
    rows = []
    for threshold in thresholds:
        for volume in min_volumes_mm3:
            per_case = pd.DataFrame([score_pair(p, r, s, threshold, volume)
                                     for p, r, s in cases])
            means = per_case.mean().to_dict()
            rows.append({"threshold": float(threshold), "min_lesion_volume_mm3": float(volume),
                         **means, "score": (means["dice"] + means["lesion_f1"]) / 2})
    table = pd.DataFrame(rows)
    return table.loc[table["score"].idxmax()].to_dict(), table
