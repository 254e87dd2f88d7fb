"""Evaluate the trained `lesion_ms_axial_t2` checkpoint on the held-out subjects and bundle it.

Runs the `msseg segment` pipeline (crop-accelerated, post-processed, native space) on every
validation image of the dataset index (fold 0):
cord Dice on the real held-out scans as they are, lesion Dice / lesion-wise F1 (published
matching, θ = 0.1) on the same scans with synthesised lesions, and volume-wise specificity on
the lesion-free originals. Writes the model folder with its card into the package.

Usage: .venv/bin/python recipes/lesion_ms_axial_t2/package.py
         --bundle src/msseg/models/bundled/lesion_ms_axial_t2
         [--run work/lesion_ms_axial_t2/run_stage5]
         [--previous VALIDATION_CSV_OF_THE_REPLACED_MODEL]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
from pathlib import Path

import pandas as pd
import torch

from msseg.experiments.holdout import evaluate_holdout, markdown_table, summarise
from msseg.models.registry import ModelFolder
from msseg.training.config import TrainConfig
from msseg.training.package import package_checkpoint

STAGES = ("run_stage1", "run_stage2", "run", "run_stage4", "run_stage5")   # train.sh


def measures(table: pd.DataFrame) -> pd.DataFrame:
    """The card's summary measures of one held-out table (:func:`summarise`), each with the
    images it is computed on."""
    m = summarise(table)
    real, synth = m["n_real"], m["n_lesion_images"]
    rows = [("cord Dice, mean", f"{m['cord_dice_mean']:.3f}",
             f"{real} real held-out scans as acquired"),
            ("cord Dice, median", f"{m['cord_dice_median']:.3f}", "same"),
            ("lesion Dice, mean", f"{m['lesion_dice']:.3f}", f"{synth} held-out scans + lesions"),
            ("lesion-wise F1, mean (θ = 0.1)", f"{m['lesion_f1']:.3f}", "same"),
            ("volume-wise specificity", f"{m['specificity']:.3f}", f"{real} real scans"),
            ("inference time, median", f"{m['seconds_median']:.1f} s", "per image, this CPU")]
    return pd.DataFrame(rows, columns=["measure", "value", "data"])


def validation_table(table: pd.DataFrame, previous: pd.DataFrame | None) -> str:
    """The summary measures, beside those of the model this one replaces (measured on the same
    images) when given."""
    rows = measures(table)
    if previous is None:
        return markdown_table(rows)
    rows.insert(2, "previous model", measures(previous)["value"])
    return markdown_table(rows) + ("\n\nprevious model: the bundled model this one replaced, "
                                   "run on the same images in the same session.")


def card(table: pd.DataFrame, log: pd.DataFrame, model: ModelFolder, stages: str,
         previous: pd.DataFrame | None = None) -> str:
    size_mb = (model.path / "model.pt").stat().st_size / 1e6
    weights = torch.load(model.path / "model.pt").values()
    n_params = sum({v.data_ptr(): v.numel() for v in weights}.values())   # shared once
    plan = model.plan
    config = TrainConfig.from_yaml(model.path / "config.yaml")
    per_image = markdown_table(table.drop(columns="patient").round(3))
    return f"""# lesion_ms_axial_t2 — spinal cord + MS lesion segmentation, axial T2w (2D)

* **Task**: region-based segmentation of the spinal cord (region 1 = cord ∪ lesion) and MS
  lesions (region 2) on axial T2-weighted MRI, the system of SCT's `lesion_ms_axial_t2`.
* **Network**: MONAI DynUNet 2D, {len(plan.strides) - 1} down-sampling steps, filters
  {list(plan.filters)}, {n_params / 1e6:.2f} M parameters ({size_mb:.1f} MB), sigmoid outputs,
  Dice + BCE loss; in-plane spacing {plan.target_spacing} mm, patch {list(plan.patch_size)}.
* **Training data** (all openly licensed, see shared/data/README.md): real cord scans of
  sct_testing_data, sct_2014_testing (errsm_11/18/21/23), ivadomed_testing (sub-test001):
  T2w (sagittal 1 mm, resliced axially), T2*w and MT axial, T1w; each hyperintense-contrast
  scan also 5 times with synthesised lesions (msseg.data.lesion_synthesis: published lesion
  statistics); SCT's hand-painted fake lesion; 40 domain-randomised synthetic spines from the
  PAM50 label maps. Batches sampled ∝ 1/√(scans of the contrast). No real MS lesion mask of the
  spinal cord exists in public data, so lesion performance is measured on synthesised lesions.
* **Validation data** (held out, never trained on): subjects errsm_24 (sagittal T2w, axial MT)
  and sub-unf01 (T2w, T2*w, T1w at 1 mm).
* **Training**: {len(stages.split(", "))} stages, each initialised from the previous one
  (`--init-from`, recipes/lesion_ms_axial_t2/train.sh): {stages};
  {config.iterations_per_epoch} iterations of batch {config.batch_size} per epoch, SGD
  (momentum 0.99, Nesterov) with poly LR; in all {log.seconds.sum() / 60:.0f} min on
  {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}, shared with other
  work), no GPU. The final checkpoint is the last stage's epoch with the best mean(cord Dice,
  lesion Dice) on validation.
* **Date**: {datetime.date.today().isoformat()}. **License**: MIT (weights and code).

## Validation metrics (held-out subjects)

{validation_table(table, previous)}

Per image:

{per_image}

## Limits

Trained on a few dozen real scans from 4 sites plus synthetic data, on a CPU budget: expect
lower accuracy than the published nnU-Net model (trained on hundreds of annotated patients).
Lesion numbers are on synthetic lesions in real images, not on real MS lesions.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, required=True,
                        help="the model folder to write "
                        "(e.g. src/msseg/models/bundled/lesion_ms_axial_t2)")
    parser.add_argument("--run", type=Path,
                        default=Path("work/lesion_ms_axial_t2/run_stage5"))
    parser.add_argument("--index", type=Path, default=Path("work/lesion_ms_axial_t2/dataset.json"))
    parser.add_argument("--checkpoint", default="best", choices=("best", "last"))
    parser.add_argument("--previous", type=Path,
                        help="validation.csv of the model this one replaces (same images), "
                             "shown beside the new values in the card")
    args = parser.parse_args()
    checkpoint = args.run / f"checkpoint_{args.checkpoint}.pt"
    staging = package_checkpoint(checkpoint, args.run / "package", "")
    table = evaluate_holdout(staging, args.index)
    table.to_csv(args.run / "validation.csv", index=False)
    logs = {name: pd.read_csv(args.run.parent / name / "log.csv") for name in STAGES
            if (args.run.parent / name / "log.csv").exists()}
    stages = ", ".join(f"{name} {len(log)} epochs" for name, log in logs.items())
    previous = pd.read_csv(args.previous) if args.previous else None
    text = card(table, pd.concat(logs.values()), staging, stages, previous)
    model = package_checkpoint(checkpoint, args.bundle, text)
    print(text)
    print(f"bundled at {model.path}")


if __name__ == "__main__":
    main()
