"""lesion_ms against lesion_ms_axial_t2 on every real T2*w / GRE scan of ../shared/data with a
cord mask, each with lesions synthesised into its cord (the calibrated T2*w prior, three
lesions, three seeds): cord Dice and lesion F1 (MetricsReloaded's published rule) per scan.
Why ``msseg segment lesion_ms`` hands T2*w scans to lesion_ms_axial_t2 (cli/segment.py,
FALLBACKS). Spine lesion numbers come from synthesised lesions: no public spinal cord data with
real lesion masks exists.

Run: .venv/bin/python recipes/lesion_ms/t2star.py [--seeds 3]   (prints a Markdown table)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from msseg import io
from msseg.data.lesion_synthesis import calibrated_prior, synthesize_lesions
from msseg.evaluation.engine import evaluate_masks
from msseg.inference.segment import make_segmenter
from msseg.models.registry import find_model

SPINE = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "spine"
SCANS = {   # scan: (image, cord mask), under ../shared/data/spine
    "sct_testing t2s": ("sct_testing_data/t2s/t2s", "sct_testing_data/t2s/t2s_seg"),
    "sub-unf01 T2star": ("ivadomed_unf/sub-unf01/anat/sub-unf01_T2star",
                         "ivadomed_unf/derivatives/labels/sub-unf01/anat/"
                         "sub-unf01_T2star_seg-manual"),
    "sub-test001 T2star": ("ivadomed_testing/sub-test001_T2star_at17d1835",
                           "ivadomed_testing/sub-test001_T2star_seg-manual_at17d1835"),
    "errsm_18 GRE": ("sct_2014_testing/errsm_18/gre/gre",
                     "sct_2014_testing/errsm_18/gre/segmentation_binary"),
}
MODELS = ("lesion_ms", "lesion_ms_axial_t2")


def measure(seeds: int) -> pd.DataFrame:
    segmenters = {m: make_segmenter(find_model(m)) for m in MODELS}
    rows = []
    for scan, (image, cord) in SCANS.items():
        img, mask = io.load(SPINE / f"{image}.nii.gz"), io.load(SPINE / f"{cord}.nii.gz")
        mask = mask.with_data((mask.data > 0.5).astype("uint8"))
        for seed in range(seeds):
            synth = synthesize_lesions(img, mask, seed=500 + seed,
                                       prior=calibrated_prior("T2starw"), n_lesions=3)
            for model, segmenter in segmenters.items():
                result = segmenter.segment(synth.image, scan)
                lesion, _ = evaluate_masks(result.lesion.data > 0, synth.lesion.data > 0,
                                           img.spacing)
                cord_scores, _ = evaluate_masks(result.cord.data > 0, mask.data > 0,
                                                img.spacing)
                rows.append({"scan": scan, "seed": seed, "model": model,
                             "cord_dice": cord_scores["dice"],
                             "lesion_f1": lesion["lesion_f1"]})
    return pd.DataFrame(rows)


def table(rows: pd.DataFrame) -> str:
    means = rows.groupby(["scan", "model"], sort=False)[["cord_dice", "lesion_f1"]].mean()
    wide = means.unstack("model")
    lines = ["| scan | cord Dice, lesion_ms | cord Dice, lesion_ms_axial_t2 | lesion F1, "
             "lesion_ms | lesion F1, lesion_ms_axial_t2 |", "|---|---|---|---|---|"]
    for scan, row in wide.iterrows():
        lines.append(f"| {scan} | {row[('cord_dice', 'lesion_ms')]:.3f} | "
                     f"{row[('cord_dice', 'lesion_ms_axial_t2')]:.3f} | "
                     f"{row[('lesion_f1', 'lesion_ms')]:.3f} | "
                     f"{row[('lesion_f1', 'lesion_ms_axial_t2')]:.3f} |")
    overall = rows.groupby("model")[["cord_dice", "lesion_f1"]].mean()
    lines.append(f"| **mean** | {overall.cord_dice['lesion_ms']:.3f} | "
                 f"{overall.cord_dice['lesion_ms_axial_t2']:.3f} | "
                 f"{overall.lesion_f1['lesion_ms']:.3f} | "
                 f"{overall.lesion_f1['lesion_ms_axial_t2']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    print(table(measure(args.seeds)))


if __name__ == "__main__":
    main()
