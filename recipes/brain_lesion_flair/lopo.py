"""Leave-one-patient-out evaluation of the generalising brain FLAIR model, and its bundling.

For each run under ROOT/runs (train_on_07[_*], train_on_19[_*], both; data from build_lopo.py,
config_lopo.yaml; a suffix names a variant trained on the same data):
1. the best checkpoint (chosen by validation lesion Dice on held-out insertions) is packaged;
2. the probability threshold and minimum lesion volume are tuned on the same validation cases
   (msseg.training.tuning: mean (Dice + lesion F1) / 2) and written into the model's plan;
3. the LOPO runs are tested on the other real patient (never trained on, never used to choose
   anything): Dice, lesion PPV / sensitivity / F1 (published matching, θ = 0.1; and F1 with
   the symmetric rule, where a component merging many lesions is one false positive), detection
   rate per reference-lesion volume bin (< 10, 10–50, 50–200, ≥ 200 mm³), time per volume.
``--bundle`` packages the ``both`` run as the bundled ``brain_lesion_flair`` with a card that
reports the LOPO table (the bundled model itself has no untouched real patient left).

Usage: .venv/bin/python recipes/brain_lesion_flair/lopo.py [--root work/brain_lesion_flair/lopo]
         [--bundle]
Writes ROOT/lopo.csv, ROOT/detection.csv and ROOT/<run>/tuning.csv.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from package import score_record

from msseg import io
from msseg.data.index import load_index
from msseg.evaluation.engine import EvalOptions
from msseg.evaluation.lesion_matching import (
    lesion_scores,
    match_lesions,
    size_bin_index,
    size_bin_labels,
)
from msseg.experiments.holdout import markdown_table
from msseg.inference.options import SegmentOptions
from msseg.inference.segment import Segmenter
from msseg.models.registry import BUNDLED, ModelFolder
from msseg.training.config import TrainConfig
from msseg.training.package import package_checkpoint
from msseg.training.tuning import tune_postprocessing

RUNS = {"train_on_07": "19", "train_on_19": "07", "both": None}
LOSSES = {"dice_bce": "Dice + BCE", "wbce": "weighted BCE", "dice": "Dice"}
BINS = (10.0, 50.0, 200.0)
NORMALISATION = {
    "quantile": "quantile-normalised to the training set's mean quantile function (stored in "
                "plan.json)",
    "minmax": "min-max scaled to [0, 1]\n  within the brain, per image (the published system "
              "normalises by quantiles; its [0, 1]\n  arm was better here: README, ablation)",
}


def tuned(run: Path, index: Path) -> tuple[ModelFolder, dict, pd.DataFrame]:
    """The best checkpoint packaged with the (threshold, minimum volume) tuned on fold 0."""
    staging = package_checkpoint(run / "checkpoint_best.pt", run / "package", "")
    segmenter = Segmenter(staging, SegmentOptions(crop=False, postprocessing=False))
    cases = []
    for record in (r for r in load_index(index) if r.fold == 0):
        image = io.load(record.image)
        probability = segmenter.segment(image, record.image).probabilities["lesion"].data
        cases.append((probability, io.load(record.lesion).data > 0, image.spacing))
    best, grid = tune_postprocessing(cases)
    grid.to_csv(run / "tuning.csv", index=False)
    changes = {"threshold": best["threshold"],
               "min_lesion_volume_mm3": best["min_lesion_volume_mm3"]}
    return package_checkpoint(run / "checkpoint_best.pt", run / "package", "", changes), best, grid


def test(model: ModelFolder, record) -> tuple[dict, pd.DataFrame]:
    """package.py's scores of the test record, plus lesion F1 with the symmetric rule."""
    row, lesions, pred = score_record(Segmenter(model, SegmentOptions(crop=False)), record)
    options = EvalOptions()
    strict = lesion_scores(match_lesions(pred, io.load(record.lesion).data > 0,
                                         options.overlap, options.connectivity, "symmetric"))
    columns = list(row)
    row["lesion_f1_symmetric"] = strict["lesion_f1"]
    order = [*columns[:6], "lesion_f1_symmetric", *columns[6:]]   # as before: after the counts
    return {k: row[k] for k in order}, pd.DataFrame(lesions)


def detection(lesions: pd.DataFrame) -> dict:
    """Detected / total reference lesions per volume bin."""
    ref = lesions[lesions["kind"] == "ref"]
    bins = size_bin_index(ref["volume_mm3"].to_numpy(float), BINS)
    hits = ref["true_positive"].to_numpy(bool)
    out = {}
    for i, name in enumerate(size_bin_labels(BINS)):
        n = int((bins == i).sum())
        out[f"{name} mm³"] = f"{hits[bins == i].sum()}/{n} ({hits[bins == i].mean():.0%})" \
            if n else "0/0"
    return out


def card(model: ModelFolder, table: pd.DataFrame, bins: pd.DataFrame, best: dict,
         log: pd.DataFrame, fit: pd.DataFrame) -> str:
    plan, config = model.plan, TrainConfig.from_yaml(model.path / "config.yaml")
    n_params = sum(v.numel() for v in torch.load(model.path / "model.pt").values())
    size_mb = (model.path / "model.pt").stat().st_size / 1e6
    title = "MS lesion segmentation on brain FLAIR (UNet++ on a ResNet-18-style encoder)"
    return f"""# brain_lesion_flair — {title}

* **System**: Badea & Popa, "Toward generalizable multiple sclerosis lesion segmentation
  models", reimplemented in msseg: axial slices resized to 224×224, intensities
  {NORMALISATION[plan.normalization]}, a UNet++ decoder on a ResNet-18-style encoder (basic
  blocks [2, 2, 2, 2], widths {list(plan.filters[:4])}; the published ResNet-18's are
  64–512; no pretrained weights), {n_params / 1e6:.2f} M parameters ({size_mb:.1f} MB), loss
  {LOSSES[config.loss]} (published: weighted BCE), Adam lr {config.learning_rate}, weight
  decay {config.weight_decay}; augmentation against scanner differences (bias field, gamma,
  contrast, noise, blur, lower resolution); half the slices centred on a lesion drawn uniformly
  (small lesions as often as large ones).
* **Input**: a skull-stripped 3D FLAIR (brain = non-zero voxels), any orientation; output: the
  lesion mask in the input's native space.
* **Training data**: 3D-MR-MS (Lesjak et al., Neuroinformatics 2017, CC-BY), MNI space 1 mm:
  both real patients (07, 19) with their consensus masks, and each one's FLAIR with 21 of the 27
  other patients' real consensus masks inserted (recipes/brain_lesion_flair/build_lopo.py).
* **Model selection**: best epoch by mean lesion Dice on the 12 held-out insertions (6 masks
  per background); threshold **{best['threshold']:g}** and minimum lesion volume
  **{best['min_lesion_volume_mm3']:g} mm³** tuned on the same 12 (mean (Dice + lesion F1) / 2 =
  {best['score']:.3f}); `msseg segment` applies them unless `--threshold` /
  `--min-lesion-volume-mm3` are given.
* **Training**: {len(log)} epochs × {config.iterations_per_epoch} iterations of batch
  {config.batch_size}, {log.seconds.sum() / 60:.0f} min on {os.cpu_count()} CPU cores
  ({platform.processor() or platform.machine()}), no GPU. **Date**:
  {datetime.date.today().isoformat()}. **License**: MIT (weights), data CC-BY (cite Lesjak
  et al. 2017).

## Generalisation to an unseen real patient (leave one patient out)

The bundled model has seen both real patients. What to expect on a patient it has not seen
comes from the recipe trained on one real background and tested on the other real patient
(never trained on, never used to choose the epoch, threshold or size); the rows with this
model's normalisation ({config.normalization}) and budget ({config.epochs} epochs ×
{config.iterations_per_epoch} iterations) are its recipe, the others earlier variants:

{markdown_table(table.round(3))}

Detection rate by reference-lesion volume (detected / reference lesions):

{markdown_table(bins)}

The bundled model itself on the two real patients — both were trained on, so this is how well
it fits them, not validation:

{markdown_table(fit.round(3))}

## Limits

Two real backgrounds of one site and one scanner (3D-MR-MS, 3 T, Ljubljana); the 27 other
lesion masks are real but their intensities are synthesised. Expect lower accuracy on other
sites than the published models trained on three public datasets. Images must be
skull-stripped (zero outside the brain) like the training data.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("work/brain_lesion_flair/lopo"))
    parser.add_argument("--bundle", action="store_true")
    args = parser.parse_args()
    rows, bins, both = [], [], None
    for run in sorted(p for p in (args.root / "runs").iterdir() if p.is_dir()):
        data = next((d for d in RUNS if run.name == d or run.name.startswith(d + "_")), None)
        if data is None or not (run / "checkpoint_best.pt").is_file():
            print(f"{run.name}: not a LOPO run or not trained yet, skipped")
            continue
        patient = RUNS[data]
        model, best, _ = tuned(run, args.root / data / "dataset.json")
        print(f"{run.name}: threshold {best['threshold']:g}, min lesion volume "
              f"{best['min_lesion_volume_mm3']:g} mm³ (validation score {best['score']:.3f})")
        if patient is None:
            both = (run, best, model) if run.name == "both" else both
            continue
        record = load_index(args.root / data / "test.json")[0]
        row, lesions = test(model, record)
        config = TrainConfig.from_yaml(model.path / "config.yaml")
        base = {"run": run.name, "architecture": config.architecture, "loss": config.loss,
                "trained on": f"patient {data[-2:]}", "tested on": f"real patient {patient}",
                "normalization": config.normalization,
                "epochs": len(pd.read_csv(run / "log.csv")),
                "iterations": config.iterations_per_epoch, "threshold": best["threshold"],
                "min_volume_mm3": best["min_lesion_volume_mm3"]}
        rows.append({**base, **row})
        bins.append({"run": run.name, "tested on": base["tested on"], **detection(lesions)})
    table, bin_table = pd.DataFrame(rows), pd.DataFrame(bins)
    table.to_csv(args.root / "lopo.csv", index=False)
    bin_table.to_csv(args.root / "detection.csv", index=False)
    print(markdown_table(table.round(3)))
    print(markdown_table(bin_table))
    if args.bundle and both is not None:
        run, best, model = both
        changes = {"threshold": best["threshold"],
                   "min_lesion_volume_mm3": best["min_lesion_volume_mm3"]}
        fit = pd.DataFrame([{"patient (trained on)": RUNS[data],
                             **test(model, load_index(args.root / data / "test.json")[0])[0]}
                            for data in ("train_on_19", "train_on_07")])
        print(markdown_table(fit.round(3)))
        text = card(model, table, bin_table, best, pd.read_csv(run / "log.csv"), fit)
        model = package_checkpoint(run / "checkpoint_best.pt", BUNDLED / "brain_lesion_flair",
                                   text, changes)
        print(f"bundled at {model.path}")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
