"""How well `msseg segment`'s skull stripping (BET through brainextractor,
`msseg.preprocess.skull_strip`) finds the brain, and what it changes in the lesions.

No unstripped brain scan with a brain mask is in ../shared, so each real 3D-MR-MS patient with a
FLAIR (07, 19; skull-stripped, MNI space, 1 mm) is given a synthetic head back
(`msseg.data.brain_synthesis.synthetic_head`: CSF, skull tables, marrow, scalp, air noise; no face
or neck), as it is (`MNI head`) and moved to a scanner-like grid (`scanner_grid`: 8° about L–R,
(5, −4, 6) mm, 0.7 × 0.7 × 3 mm; `moved head`). For each: the brain Dice of BET's mask against
the true brain, BET's time (one thread), and the Dice of the bundled model's lesion mask with
BET's brain against the same with the true brain.

Usage: .venv/bin/python recipes/brain_lesion_flair/skull_strip.py [--shared ../shared/data]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from msseg import io
from msseg.data.brain_synthesis import scanner_grid, synthetic_head
from msseg.evaluation.voxel import dice
from msseg.experiments.holdout import markdown_table
from msseg.image import Image
from msseg.inference.brain import brain_input
from msseg.inference.options import SegmentOptions
from msseg.inference.segment import make_segmenter
from msseg.models.registry import find_model
from msseg.preprocess.resample import resample_to_grid
from msseg.preprocess.skull_strip import brain_mask

FLAIR = "FLAIR_N4_noneck_reduced_winsor_regtoFLAIR_brain_N4_regtoMNI.nii.gz"


def heads(flair: Image):
    """(name, head image, true brain mask) as in MNI space and moved to a scanner-like grid."""
    head, brain = synthetic_head(flair)
    yield "MNI head", head, brain
    shape, grid, sampled_at = scanner_grid(flair.shape, flair.affine)
    moved = resample_to_grid(head, shape, sampled_at, order=1).data
    truth = resample_to_grid(head.with_data(brain.astype(np.float32)), shape, sampled_at,
                             order=1).data >= 0.5
    yield "moved head", Image(moved, grid), truth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    args = parser.parse_args()
    segmenter = make_segmenter(find_model("brain_lesion_flair"), SegmentOptions(threads=1))
    rows = []
    for patient in ("07", "19"):
        flair = io.load(args.shared / f"brain/3d-mr-ms/MNI/patient{patient}" / FLAIR)
        for name, head, truth in heads(flair):
            start = time.perf_counter()
            found = brain_mask(head).data > 0
            seconds = time.perf_counter() - start
            lesions = [segmenter.segment(brain_input(head, name, head.with_data(mask))[0])
                       .lesion.data > 0 for mask in (found, truth)]
            rows.append({"patient": patient, "scan": name, "grid_mm": "×".join(
                f"{s:g}" for s in np.round(head.spacing, 2)),
                "brain_dice": dice(found, truth),
                "brain_ml_bet": found.sum() * head.voxel_volume_mm3 / 1e3,
                "brain_ml_true": truth.sum() * head.voxel_volume_mm3 / 1e3,
                "lesion_dice_bet_vs_true_brain": dice(*lesions),
                "lesion_ml_bet": lesions[0].sum() * head.voxel_volume_mm3 / 1e3,
                "lesion_ml_true_brain": lesions[1].sum() * head.voxel_volume_mm3 / 1e3,
                "bet_s": seconds})
            print(rows[-1], flush=True)
    print(markdown_table(pd.DataFrame(rows).round(3)))


if __name__ == "__main__":
    main()
