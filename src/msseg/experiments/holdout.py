"""Score a model folder on the held-out images of a dataset index through `msseg segment`'s
pipeline (the numbers of the model cards): cord Dice on the real scans, lesion Dice and
lesion-wise F1 on scans with (synthesised) lesions, lesions found on lesion-free scans."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from msseg import io
from msseg.data.index import load_index
from msseg.evaluation.engine import EvalOptions, evaluate_masks
from msseg.evaluation.voxel import dice
from msseg.inference.options import SegmentOptions
from msseg.inference.segment import make_segmenter
from msseg.models.registry import ModelFolder
from msseg.statistics import wilcoxon_paired


def evaluate_holdout(model: ModelFolder, index: str | Path, fold: int = 0,
                     options: SegmentOptions | None = None) -> pd.DataFrame:
    """One row per image of ``fold``: cord Dice, lesion metrics, counts, seconds."""
    segmenter = make_segmenter(model, options or SegmentOptions())
    rows = []
    for record in (r for r in load_index(index) if r.fold == fold):
        image = io.load(record.image)
        start = time.perf_counter()
        pred = segmenter.segment(image, record.image)
        seconds = time.perf_counter() - start
        cord_ref = io.load(record.cord).data > 0.5
        lesion_ref = (io.load(record.lesion).data > 0 if record.lesion
                      else np.zeros_like(cord_ref))
        lesion = pred.lesion.data > 0 if pred.lesion is not None else np.zeros_like(cord_ref)
        metrics, _ = evaluate_masks(lesion, lesion_ref, image.spacing,
                                    EvalOptions())
        rows.append({"image": Path(record.image).name, "patient": record.patient,
                     "contrast": record.contrast, "synthetic_lesions": record.lesion is not None,
                     "cord_dice": dice(pred.cord.data > 0, cord_ref),
                     "lesion_dice": metrics["dice"], "lesion_f1": metrics["lesion_f1"],
                     "lesion_ppv": metrics["lesion_ppv"],
                     "lesion_sensitivity": metrics["lesion_sensitivity"],
                     "n_ref_lesions": metrics["n_ref_lesions"],
                     "n_pred_lesions": metrics["n_pred_lesions"], "seconds": seconds})
    return pd.DataFrame(rows)


def markdown_table(table: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(False)]
    return "\n".join(lines)


def summarise(table: pd.DataFrame) -> dict[str, float]:
    """A model card's summary of :func:`evaluate_holdout` rows: lesion Dice, PPV, sensitivity
    and F1 (means over the images with lesions), cord Dice mean and median and volume-wise
    specificity (no lesion predicted) over the real scans as acquired, the counts of each, and
    the median seconds per image."""
    lesions, real = table[table["synthetic_lesions"]], table[~table["synthetic_lesions"]]
    means = {key: lesions[key].mean()
             for key in ("lesion_dice", "lesion_ppv", "lesion_sensitivity", "lesion_f1")}
    return {**means, "cord_dice_mean": real["cord_dice"].mean(),
            "cord_dice_median": real["cord_dice"].median(),
            "specificity": (real["n_pred_lesions"] == 0).mean(), "n_real": len(real),
            "n_lesion_images": len(lesions), "seconds_median": table["seconds"].median()}


LESION_METRICS = ("lesion_dice", "lesion_ppv", "lesion_sensitivity", "lesion_f1")


def comparison_tables(rows: pd.DataFrame, regimes: Sequence[str],
                      others: Sequence[str] = ()) -> str:
    """Models compared on the same held-out images (rows of :func:`evaluate_holdout` with a
    ``model`` column): the per-contrast lesion Dice table, the overall lesion metrics, cord
    Dice and specificity on the real scans, and the paired Wilcoxon tests between the
    ``regimes`` (Holm), as markdown; ``others`` (existing models) are shown, not tested."""
    models = [m for m in (*regimes, *others) if m in set(rows.model)]
    lesions = rows[rows.synthetic_lesions]
    real = rows[~rows.synthetic_lesions]
    per = lesions.pivot_table(index="contrast", columns="model", values="lesion_dice",
                              aggfunc="mean")[models].round(3)
    per.insert(0, "n", lesions[lesions.model == models[0]].groupby("contrast").size())
    overall = lesions.groupby("model")[list(LESION_METRICS)].mean().loc[models].round(3)
    cord = real.groupby("model").agg(cord_dice_median=("cord_dice", "median"),
                                     specificity=("n_pred_lesions", lambda s: (s == 0).mean()),
                                     n_real=("cord_dice", "size")).loc[models].round(3)
    by_image = {m: lesions[lesions.model == m].set_index("image")["lesion_dice"]
                for m in regimes if m in models}
    tests = pd.DataFrame(wilcoxon_paired(by_image)) if len(by_image) > 1 else pd.DataFrame()
    parts = ["Lesion Dice per contrast (images with lesions; mean):", "",
             markdown_table(per.reset_index()), "",
             "Lesion metrics over all images with lesions (mean):", "",
             markdown_table(overall.reset_index()), "",
             "Real held-out scans as acquired (cord Dice median; volume-wise specificity):", "",
             markdown_table(cord.reset_index())]
    if not tests.empty:
        keep = [c for c in ("group_a", "group_b", "statistic", "p_value", "p_adjusted", "n")
                if c in tests.columns]
        parts += ["", "Paired Wilcoxon on lesion Dice per image (Holm):", "",
                  markdown_table(tests[keep].round(4))]
    return "\n".join(parts) + "\n"
