"""Evaluate the two-stage models on the held-out subjects and bundle them with their cards.

* ``centerline`` (CNN1): centerline error / localisation rate from evaluate_centerline.py's CSV.
* ``sc_2stage`` and ``lesion_2stage`` (CNN2): `msseg segment`'s pipeline (stage-1 centerline,
  tube of patches along it, native space) on every validation image of the index (fold 0):
  cord Dice on the real held-out scans, lesion Dice / lesion-wise F1 on the same scans with
  synthesised lesions, volume-wise specificity on the lesion-free real scans (+ t2_lumbar).

Usage: .venv/bin/python recipes/two_stage/package.py {centerline,sc_2stage,lesion_2stage}
         [--work work/two_stage] [--index work/lesion_ms_axial_t2/dataset.json]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
from pathlib import Path

import pandas as pd
import torch

from msseg import io
from msseg.experiments.holdout import evaluate_holdout, markdown_table, summarise
from msseg.inference.segment import Segmenter
from msseg.models.registry import ModelFolder
from msseg.training.config import TrainConfig
from msseg.training.package import package_checkpoint

RUNS = {"centerline": "cnn1", "sc_2stage": "sc", "lesion_2stage": "lesion"}
TITLES = {
    "centerline": "stage 1 of the two-stage framework: cord heatmap for the centerline (CNN1)",
    "sc_2stage": "spinal cord segmentation along the centerline (two-stage, CNN2 cord)",
    "lesion_2stage": "MS lesion (and cord) segmentation along the centerline (two-stage, CNN2)",
}
DATA = """real cord scans of sct_testing_data, sct_2014_testing (errsm_11/18/21/23),
  ivadomed_testing (sub-test001): T2w (sagittal 1 mm), T2*w and MT axial, T1w; each
  hyperintense-contrast scan also 5 times with synthesised lesions (msseg.data.lesion_synthesis);
  SCT's hand-painted fake lesion; 40 domain-randomised synthetic spines from the PAM50 label
  maps (recipes/lesion_ms_axial_t2/build_data.py). Batches sampled ∝ 1/√(scans of the contrast).
  Held out, never trained on: errsm_24 (sagittal T2w, axial MT) and sub-unf01 (1 mm isotropic
  T2w, T2*w, T1w)."""


LIMITS = {
    "centerline": """A few dozen real scans from 4 sites plus synthetic data, 16 epochs on a CPU
(published learning rate 1e-4): a heatmap for the centerline, not a cord segmentation.""",
    "sc_2stage": """A few dozen real scans from 4 sites plus synthetic data, trained on a CPU
budget with a learning rate 10x the published 5e-5 so that it converges in a few epochs: expect
lower accuracy than the published model.""",
    "lesion_2stage": """As sc_2stage; lesion numbers are on lesions synthesised into real scans
(no public spinal cord data with real lesion masks exists).""",
}


def network_line(model: ModelFolder) -> str:
    plan, config = model.plan, TrainConfig.from_yaml(model.path / "config.yaml")
    n_params = sum(v.numel() for v in torch.load(model.path / "model.pt").values())
    size_mb = (model.path / "model.pt").stat().st_size / 1e6
    return (f"{plan.architecture} ({plan.dims}D), filters {list(plan.filters)}, dropout "
            f"{plan.dropout}, outputs {list(plan.regions)} (sigmoid), {n_params / 1e6:.2f} M "
            f"parameters ({size_mb:.1f} MB); spacing {plan.target_spacing} mm, patch "
            f"{list(plan.patch_size)}, intensity: {plan.normalization} (landmarks learnt on the "
            f"training set, stored in plan.json); loss {config.loss}, {config.optimizer} lr "
            f"{config.learning_rate}, {config.epochs} epochs × {config.iterations_per_epoch} "
            f"iterations of batch {config.batch_size}, augmentation {config.augmentation}")


def card(task: str, model: ModelFolder, log: pd.DataFrame, results: str) -> str:
    return f"""# {task} — {TITLES[task]}

* **System**: Gros et al., "Automatic segmentation of the spinal cord and intramedullary
  multiple sclerosis lesions with convolutional neural networks", NeuroImage 2019 (the models of
  `sct_deepseg_sc` / `sct_deepseg_lesion`), reimplemented in msseg.
* **Network**: {network_line(model)}.
* **Training data** (openly licensed, see shared/data/README.md): {DATA}
* **Training**: {len(log)} epochs, {log.seconds.sum() / 60:.0f} min on {os.cpu_count()} CPU
  cores ({platform.processor() or platform.machine()}), no GPU; checkpoint = best validation
  epoch. **Date**: {datetime.date.today().isoformat()}. **License**: MIT.

## Validation (held-out subjects)

{results}

## Limits

{LIMITS[task]}
"""


def segment_results(model: ModelFolder, index: Path, shared: Path) -> tuple[str, pd.DataFrame]:
    table = evaluate_holdout(model, index)
    m = summarise(table)
    real = table[~table.synthetic_lesions]
    lumbar = io.load(shared / "spine/ms_patient_unlabelled/t2_lumbar/t2_lumbar.nii.gz")
    lumbar_lesions = len(Segmenter(model).segment(lumbar).table)
    free = list(real.n_pred_lesions == 0) + [lumbar_lesions == 0]
    rows = [("cord Dice, mean", f"{m['cord_dice_mean']:.3f}", f"{m['n_real']} real scans"),
            ("cord Dice, median", f"{m['cord_dice_median']:.3f}", "same")]
    if "lesion" in model.plan.regions:
        rows += [("lesion Dice, mean", f"{m['lesion_dice']:.3f}",
                  f"{m['n_lesion_images']} held-out scans + synthesised lesions"),
                 ("lesion-wise F1, mean (θ = 0.1)", f"{m['lesion_f1']:.3f}", "same"),
                 ("volume-wise specificity", f"{sum(free) / len(free):.3f}",
                  f"{len(free)} lesion-free real scans (held-out + t2_lumbar)")]
    rows.append(("time per image, median", f"{m['seconds_median']:.1f} s", "this CPU"))
    text = "| measure | value | data |\n|---|---|---|\n" + "\n".join(
        f"| {a} | {b} | {c} |" for a, b, c in rows)
    drop = ["patient"] + ([] if "lesion" in model.plan.regions else
                          ["lesion_dice", "lesion_f1", "lesion_ppv", "lesion_sensitivity",
                           "n_ref_lesions", "n_pred_lesions"])
    per_image = markdown_table(table.drop(columns=drop).round(3))
    return f"{text}\n\nPer image:\n\n{per_image}", table


def centerline_results(csv: Path) -> str:
    table = pd.read_csv(csv)
    scored = table.dropna(subset=["mse_mm"])
    summary = scored.groupby("method")[["mse_mm", "localisation_rate"]].median().round(3)
    text = ("Median over the held-out real scans (reference: centre of mass of the manual cord "
            "mask per axial slice):\n\n" + markdown_table(summary.reset_index()))
    return text + "\n\nPer image:\n\n" + markdown_table(table.round(3))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, required=True,
                        help="the model folder to write "
                        "(e.g. src/msseg/models/bundled/TASK)")
    parser.add_argument("task", choices=tuple(RUNS))
    parser.add_argument("--work", type=Path, default=Path("work/two_stage"))
    parser.add_argument("--index", type=Path, default=Path("work/lesion_ms_axial_t2/dataset.json"))
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    args = parser.parse_args()
    run = args.work / RUNS[args.task]
    checkpoint = run / "checkpoint_best.pt"
    log = pd.read_csv(run / "log.csv")
    staging = package_checkpoint(checkpoint, run / "package", "")
    if args.task == "centerline":
        results = centerline_results(args.work / "centerline_eval.csv")
    else:
        results, table = segment_results(staging, args.index, args.shared)
        table.to_csv(run / "validation.csv", index=False)
    text = card(args.task, staging, log, results)
    model = package_checkpoint(checkpoint, args.bundle, text)
    print(text)
    print(f"bundled at {model.path}")


if __name__ == "__main__":
    main()
