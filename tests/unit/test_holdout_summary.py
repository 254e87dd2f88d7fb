"""The model cards' summary of held-out rows (msseg.experiments.holdout.summarise)."""

from __future__ import annotations

import pandas as pd
import pytest

from msseg.experiments.holdout import summarise


def test_summarise_splits_real_scans_from_lesion_images():
    table = pd.DataFrame({
        "synthetic_lesions": [False, False, False, True, True],
        "cord_dice": [0.90, 0.80, 0.95, 0.10, 0.20],
        "n_pred_lesions": [0, 2, 0, 1, 3],
        "lesion_dice": [1.0, 0.0, 1.0, 0.6, 0.2],
        "lesion_ppv": [1.0, 0.0, 1.0, 0.5, 1.0],
        "lesion_sensitivity": [1.0, 1.0, 1.0, 1.0, 0.5],
        "lesion_f1": [1.0, 0.0, 1.0, 0.4, 0.8],
        "seconds": [1.0, 2.0, 3.0, 4.0, 10.0]})
    s = summarise(table)
    # lesion measures: the two images with lesions only
    assert s["lesion_dice"] == pytest.approx(0.4)
    assert s["lesion_ppv"] == pytest.approx(0.75)
    assert s["lesion_sensitivity"] == pytest.approx(0.75)
    assert s["lesion_f1"] == pytest.approx(0.6)
    # cord and specificity: the three real scans only
    assert s["cord_dice_mean"] == pytest.approx(0.8833333)
    assert s["cord_dice_median"] == pytest.approx(0.90)
    assert s["specificity"] == pytest.approx(2 / 3)
    assert (s["n_real"], s["n_lesion_images"]) == (3, 2)
    assert s["seconds_median"] == 3.0
