"""The lesion_ms experiment's comparison tables (msseg.experiments.holdout.comparison_tables,
used by recipes/lesion_ms/compare.py) on hand-made
per-image rows: per-contrast means with n, overall lesion metrics, cord Dice and specificity on
the real scans, and the regimes' paired Wilcoxon tests."""

from __future__ import annotations

import pandas as pd

from msseg.experiments.holdout import comparison_tables

REGIMES = ("baseline", "sampling", "finetune")


def _rows():
    rows = []
    dice = {"baseline": 0.0, "sampling": 0.2, "finetune": 0.5}
    for model, base in dice.items():
        for k, contrast in enumerate(["T2w", "T2w", "PSIR", "PSIR", "PSIR", "STIR"]):
            rows.append({"model": model, "image": f"les{k}", "contrast": contrast,
                         "synthetic_lesions": True, "cord_dice": 0.9,
                         "lesion_dice": base + 0.01 * k, "lesion_ppv": base,
                         "lesion_sensitivity": base, "lesion_f1": base, "n_pred_lesions": 1})
        for k in range(2):
            rows.append({"model": model, "image": f"real{k}", "contrast": "T2w",
                         "synthetic_lesions": False, "cord_dice": 0.8 + 0.1 * k,
                         "lesion_dice": 1.0, "lesion_ppv": 1.0, "lesion_sensitivity": 1.0,
                         "lesion_f1": 1.0, "n_pred_lesions": k})
    return pd.DataFrame(rows)


def test_comparison_tables_hold_the_hand_computed_values():
    text = comparison_tables(_rows(), REGIMES)
    # PSIR: images 2, 3, 4 -> finetune 0.5 + mean(0.02, 0.03, 0.04) = 0.53, n = 3
    assert "| PSIR | 3 | 0.03 | 0.23 | 0.53 |" in text
    assert "| STIR | 1 | 0.05 | 0.25 | 0.55 |" in text
    assert "| finetune | 0.525 | 0.5 | 0.5 | 0.5 |" in text   # mean of 0.50 … 0.55
    # real scans: cord Dice median of 0.8 and 0.9; one of two without a predicted lesion
    assert "| baseline | 0.85 | 0.5 | 2 |" in text
    # Wilcoxon, 6 pairs all of one sign: exact two-sided p = 2 / 2^6; Holm over 3 tests: x3
    assert "| baseline | sampling | 0.0 | 0.0312 | 0.0938 | 6 |" in text
