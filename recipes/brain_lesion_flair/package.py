"""Evaluate the brain FLAIR model on the held-out real patient 19 and bundle it with its card.

Runs `msseg segment`'s pipeline (quantile normalisation, 224x224 slices, UNet++, back to the
native grid) on patient 19's real FLAIR and scores it against the real consensus mask: Dice,
lesion-wise F1 (published matching, θ = 0.1), lesion counts, time.

Usage: .venv/bin/python recipes/brain_lesion_flair/package.py [--run work/brain_lesion_flair/run]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from msseg import io
from msseg.data.index import load_index
from msseg.evaluation.engine import EvalOptions, evaluate_masks
from msseg.experiments.holdout import markdown_table
from msseg.inference.options import SegmentOptions
from msseg.inference.segment import Segmenter
from msseg.models.registry import ModelFolder
from msseg.training.config import TrainConfig
from msseg.training.package import package_checkpoint


def score_record(segmenter: Segmenter, record) -> tuple[dict, list[dict], np.ndarray]:
    """Segment a record's image through the `msseg segment` pipeline and score its lesion
    mask: (metrics row, per-lesion rows, predicted mask)."""
    image = io.load(record.image)
    start = time.perf_counter()
    pred = segmenter.segment(image, record.image).lesion.data > 0
    seconds = time.perf_counter() - start
    ref = io.load(record.lesion).data > 0
    metrics, lesions = evaluate_masks(pred, ref, image.spacing, EvalOptions())
    row = {k: metrics[k] for k in ("dice", "lesion_f1", "lesion_ppv", "lesion_sensitivity",
                                   "n_ref_lesions", "n_pred_lesions")}
    row["ref_volume_ml"] = ref.sum() * image.voxel_volume_mm3 / 1000
    row["pred_volume_ml"] = pred.sum() * image.voxel_volume_mm3 / 1000
    row["seconds"] = seconds
    return row, lesions, pred


def evaluate(model: ModelFolder, index: Path) -> pd.DataFrame:
    segmenter = Segmenter(model, SegmentOptions(crop=False))
    return pd.DataFrame([{"image": Path(r.image).name, **score_record(segmenter, r)[0]}
                         for r in load_index(index) if r.fold == 0])


def card(table: pd.DataFrame, log: pd.DataFrame, model: ModelFolder) -> str:
    plan, config = model.plan, TrainConfig.from_yaml(model.path / "config.yaml")
    n_params = sum(v.numel() for v in torch.load(model.path / "model.pt").values())
    size_mb = (model.path / "model.pt").stat().st_size / 1e6
    return f"""# brain_lesion_flair — MS lesion segmentation on brain FLAIR (2D UNet++)

* **System**: Badea & Popa, "Toward generalizable multiple sclerosis lesion segmentation
  models", reimplemented in msseg: axial slices resized to 224×224, intensities
  quantile-normalised to the training set's mean quantile function (stored in plan.json),
  MONAI BasicUNetPlusPlus (features {list(plan.filters)}), {n_params / 1e6:.2f} M parameters
  ({size_mb:.1f} MB), weighted BCE (positive weight {config.pos_weight}), Adam lr
  {config.learning_rate}, weight decay {config.weight_decay}.
* **Input**: a skull-stripped 3D FLAIR (brain = non-zero voxels), any orientation; output: the
  lesion mask in the input's native space.
* **Training data**: 3D-MR-MS (Lesjak et al., Neuroinformatics 2017, CC-BY), MNI space 1 mm:
  patient 07's real FLAIR with its consensus mask, and 27 semi-synthetic images = patient 07's
  FLAIR with the real consensus mask of each of 27 other patients inserted, intensities modelled
  on patient 07's real lesions (recipes/brain_lesion_flair/build_data.py).
* **Validation**: real patient 19 (FLAIR + consensus mask), never trained on.
* **Training**: {len(log)} epochs × {config.iterations_per_epoch} iterations of batch
  {config.batch_size} (published: up to 50 epochs), {log.seconds.sum() / 60:.0f} min on
  {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), no GPU; best epoch
  by validation lesion Dice. **Date**: {datetime.date.today().isoformat()}. **License**: MIT
  (weights), data CC-BY (cite Lesjak et al. 2017).

## Validation (real patient 19)

{markdown_table(table.round(3))}

## Limits

One real training background: anatomy and scanner are those of one patient of one site, so
expect lower accuracy on other sites than the published models trained on three public datasets.
Images must be skull-stripped (zero outside the brain) like the training data.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, required=True,
                        help="the model folder to write "
                        "(e.g. src/msseg/models/bundled/brain_lesion_flair)")
    parser.add_argument("--run", type=Path, default=Path("work/brain_lesion_flair/run"))
    parser.add_argument("--index", type=Path, default=Path("work/brain_lesion_flair/dataset.json"))
    args = parser.parse_args()
    checkpoint = args.run / "checkpoint_best.pt"
    staging = package_checkpoint(checkpoint, args.run / "package", "")
    table = evaluate(staging, args.index)
    table.to_csv(args.run / "validation.csv", index=False)
    text = card(table, pd.read_csv(args.run / "log.csv"), staging)
    model = package_checkpoint(checkpoint, args.bundle, text)
    print(text)
    print(f"bundled at {model.path}")


if __name__ == "__main__":
    main()
