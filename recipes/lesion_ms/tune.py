"""Tune the bundled lesion_ms's threshold and minimum lesion volume on data of their own.

The experiment's held-out subjects (fold 0 of work/lesion_ms/dataset.json) are what the
card reports, so they must not choose the post-processing. This recipe builds a separate
tuning set from images neither training nor the held-out comparison uses:
* the two real sagittal T2w scans of sct_2014_testing without manual masks (errsm_20,
  errsm_22), as acquired (taken as lesion-free, as the experiment takes its real scans), and
  twice each with lesions synthesised in T2w appearance; the cord that places those lesions is
  the bundled `sc_2stage`'s segmentation (another model: no manual cord mask exists);
* 2 synthetic PAM50 spines of each of PSIR, STIR and UNIT1 with lesions, with seeds no other
  image of the experiment uses (training 0–3, held-out 9000–9002, pretraining ≥ 20000).
The bundled lesion_ms predicts cord and lesion probabilities on each (msseg segment's pipeline,
post-processing off), msseg.training.tuning scores every (threshold, minimum volume) pair with
segment's own post-processing (largest cord component, lesions within 2 mm of it, small
components removed) — mean over cases of (Dice + lesion F1) / 2, a lesion-free case scoring 1
only when nothing is left — and the best pair is written into the bundled plan.json. Then the
held-out comparison is scored again with the tuned model.

Usage: .venv/bin/python recipes/lesion_ms/tune.py [--shared ../shared/data]
         [--work work/lesion_ms] [--no-write]
Writes WORK/tuning/ (images, tuning.json, tuning.csv) and WORK/scores/lesion_ms_tuned.csv;
without --no-write, the tuned pair into src/msseg/models/bundled/lesion_ms/plan.json and its
account (with the held-out measures before and after) into the model card.
Needs work/lesion_ms/dataset.json (recipes/lesion_ms/build_data.py) for the held-out scores.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from build_data import record, synthetic_cases

from msseg import io
from msseg.data.index import load_index, save_index
from msseg.data.lesion_synthesis import LesionPrior, prior_for_contrast, write_lesion_versions
from msseg.experiments.holdout import evaluate_holdout, summarise
from msseg.inference.options import SegmentOptions
from msseg.inference.segment import Segmenter
from msseg.models.registry import find_model
from msseg.postprocess import PostprocessConfig
from msseg.training.tuning import tune_postprocessing

#: Real scans no lesion_ms image comes from: (patient, path under shared/data/spine)
UNUSED_REAL = [("errsm_20", "sct_2014_testing/errsm_20/t2/t2"),
               ("errsm_22", "sct_2014_testing/errsm_22/t2/t2")]
SYNTHETIC = {"PSIR": 2, "STIR": 2, "UNIT1": 2}
SEED0 = 9500


def build(shared: Path, out: Path) -> Path:
    """The tuning set's index (fold 0), built once."""
    index = out / "tuning.json"
    if index.is_file():
        return index
    out.mkdir(parents=True, exist_ok=True)
    cord_model = Segmenter(find_model("sc_2stage"), SegmentOptions())
    prior = LesionPrior(p_lesion_free=0.0)
    records = []
    for k, (patient, path) in enumerate(UNUSED_REAL):
        image_path = shared / "spine" / f"{path}.nii.gz"
        image = io.load(image_path)
        cord_path = out / f"{patient}_T2w_cord-sc2stage.nii.gz"
        io.save(cord_model.segment(image, image_path).masks["cord"], cord_path)
        records.append(record([image_path, cord_path], patient, "T2w", "errsm", 0))
        seeds = [7000 + 100 * k + v for v in range(2)]
        for paths in write_lesion_versions(image_path, cord_path, out, f"{patient}_T2w", seeds,
                                           prior_for_contrast("T2w", prior)):
            records.append(record(paths, patient, "T2w", "errsm", 0))
    for j, (contrast, n) in enumerate(SYNTHETIC.items()):
        seeds = range(SEED0 + 10 * j, SEED0 + 10 * j + n)
        records += synthetic_cases(shared / "spine/PAM50", out, contrast, seeds, 0, prior,
                                   "tuning")
    save_index(records, index)
    return index


def probabilities(index: Path) -> list[tuple]:
    """(lesion probability, lesion reference, spacing, cord probability) per tuning image."""
    segmenter = Segmenter(find_model("lesion_ms"), SegmentOptions(postprocessing=False))
    cases = []
    for rec in load_index(index):
        image = io.load(rec.image)
        maps = segmenter.segment(image, rec.image).probabilities
        reference = (io.load(rec.lesion).data > 0 if rec.lesion
                     else np.zeros(image.shape, bool))      # lesion-free
        cases.append((maps["lesion"].data, reference, image.spacing, maps["cord"].data))
        print(f"{Path(rec.image).name}: {'lesions' if rec.lesion else 'lesion-free'}",
              flush=True)
    return cases


def write_plan(best: dict) -> Path:
    """The tuned pair in the bundled model's plan.json (every other key as it was)."""
    path = find_model("lesion_ms").path / "plan.json"
    plan = json.loads(path.read_text())
    plan.update(threshold=float(best["threshold"]),
                min_lesion_volume_mm3=float(best["min_lesion_volume_mm3"]))
    path.write_text(json.dumps(plan, indent=1))
    return path


SECTION = "## Threshold and minimum lesion volume (tuned on other images)"


def card_section(best: dict, grid: pd.DataFrame, untuned: dict, tuned: dict,
                 table: pd.DataFrame) -> str:
    """The card's account of the tuning: data, grid, choice, and the held-out effect."""
    rows = [("lesion Dice", "lesion_dice"), ("lesion PPV", "lesion_ppv"),
            ("lesion sensitivity", "lesion_sensitivity"), ("lesion F1", "lesion_f1"),
            ("cord Dice, median of the real scans", "cord_dice_median"),
            ("volume-wise specificity (real scans)", "specificity")]
    lines = [SECTION, "",
             "Chosen on a tuning set that neither training nor the held-out comparison uses "
             "(recipes/lesion_ms/tune.py): the real sagittal T2w scans errsm_20 and errsm_22 "
             "as acquired (lesion-free) and twice each with synthesised lesions (placed in "
             "`sc_2stage`'s cord: they have no manual mask), and 2 synthetic spines of each of "
             f"PSIR, STIR and UNIT1. Grid: thresholds {_values(grid['threshold'])} × minimum "
             f"volumes {_values(grid['min_lesion_volume_mm3'])} mm³; score: mean (Dice + "
             "lesion F1, symmetric rule) / 2, a lesion-free image scoring 1 only when nothing "
             f"is predicted. Chosen: **threshold {best['threshold']}** (the lesion map; the "
             f"cord stays at 0.5), **minimum lesion volume {best['min_lesion_volume_mm3']} "
             f"mm³** (score {best['score']:.3f}; at 0.5 / 3 mm³: "
             f"{_score_at(grid, 0.5, 3.0):.3f}). `--threshold` and `--min-lesion-volume-mm3` "
             "override them.", "",
             "The same held-out images as above (chosen by nothing here):", "",
             "| measure | 0.5 / 3 mm³ (trained) | tuned |", "|---|---|---|"]
    lines += [f"| {label} | {untuned[key]:.3f} | {tuned[key]:.3f} |" for label, key in rows]
    real = table[~table["synthetic_lesions"]]
    lines += ["", "Lesions predicted on the lesion-free real scans, tuned: "
              + ", ".join(f"{r.image} ({r.contrast}) {r.n_pred_lesions}"
                          for r in real.itertuples()) + ".", ""]
    return "\n".join(lines)


def _values(column: pd.Series) -> str:
    return ", ".join(f"{v:g}" for v in sorted(column.unique()))


def _score_at(grid: pd.DataFrame, threshold: float, volume: float) -> float:
    row = grid[(grid["threshold"] == threshold) & (grid["min_lesion_volume_mm3"] == volume)]
    return float(row["score"].iloc[0])


def write_card_section(section: str) -> None:
    """Replace the card's tuning section (or add it at the end)."""
    path = find_model("lesion_ms").path / "model_card.md"
    text = path.read_text()
    kept = text.split(SECTION)[0].rstrip("\n")
    path.write_text(kept + "\n\n" + section)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument("--work", type=Path, default=Path("work/lesion_ms"))
    parser.add_argument("--no-write", action="store_true",
                        help="tune and report, leave the bundled plan as it is")
    args = parser.parse_args()
    index = build(args.shared, args.work / "tuning")
    best, grid = tune_postprocessing(probabilities(index))
    grid.to_csv(args.work / "tuning" / "tuning.csv", index=False)
    print(grid.round(3).to_string(index=False))
    print(f"best: threshold {best['threshold']}, minimum lesion volume "
          f"{best['min_lesion_volume_mm3']} mm³ (score {best['score']:.3f})")
    if args.no_write:
        return
    as_trained = SegmentOptions(threshold=0.5, postprocess=PostprocessConfig(
        min_lesion_volume_mm3=3.0))   # what the trained model used before (cord: 0.5 too)
    before = evaluate_holdout(find_model("lesion_ms"), args.work / "dataset.json",
                              options=as_trained)
    print(f"written into {write_plan(best)}")
    table = evaluate_holdout(find_model("lesion_ms"), args.work / "dataset.json")
    (args.work / "scores").mkdir(exist_ok=True)
    table.to_csv(args.work / "scores" / "lesion_ms_tuned.csv", index=False)
    untuned, tuned = summarise(before), summarise(table)
    print("held out, 0.5 / 3 mm³:", {k: round(float(v), 3) for k, v in untuned.items()})
    print("held out, tuned:", {k: round(float(v), 3) for k, v in tuned.items()})
    write_card_section(card_section(best, grid, untuned, tuned, table))


if __name__ == "__main__":
    main()
