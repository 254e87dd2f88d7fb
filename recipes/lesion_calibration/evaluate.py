"""Agreement with SCT's released real-data models, for a candidate `lesion_ms_axial_t2`.

Three measurements (no ground truth of real lesions exists: the first is on synthetic lesions,
the others are agreement and false positives):

1. **Faint lesions**: 3 lesions per image, synthesised at a lesion / white-matter ratio drawn
   in [1.15, 1.3] (a plateau: every voxel inside at that ratio; white-matter columns as the
   calibrated prior places them) into the real scans held out from every msseg training set
   that SCT's models cover: sub-unf01 T2w and T2*w, errsm_24's sagittal T2w, and the latter
   as 7 mm axial slices (msseg.data.lesion_synthesis.thick_slices). Lesion-wise F1 (published
   matching, θ = 0.1) of SCT's model for the contrast (`t2_ax` / `t2s`, run with the manual cord
   mask as its centerline file, SCT's best case) and of each msseg model.
2. **The real MS patient** `t2_ms`: SCT's `t2_ax` with its automatic centerline as the
   reference; how many of its lesions each msseg model's mask touches, their volumes, the
   lesions msseg marks outside its own cord mask.
3. **Lesion-free real scans** (every real spine scan of ../shared/data but `t2_ms` and SCT's
   painted lesion): lesions marked, volume-wise specificity (the share of scans with none).

Run: .venv/bin/python recipes/lesion_calibration/evaluate.py --model CANDIDATE_FOLDER
       --name NAME [--note TEXT] [--previous lesion_ms_axial_t2] [--seeds 4] [--out DIR]
       [--tables DIR]   (re-write the section from a run's saved tables)
Writes OUT/faint.csv, OUT/t2_ms.csv, OUT/lesion_free.csv and the markdown section
recipes/lesion_calibration/results/NAME.md (what a model card's agreement section carries).
"""

from __future__ import annotations

import argparse
import datetime
from dataclasses import replace
from pathlib import Path

import cc3d
import numpy as np
import pandas as pd

from msseg import io
from msseg.data.lesion_synthesis import (
    calibrated_prior,
    synthesize_lesions,
    thick_slices,
)
from msseg.evaluation.agreement import lesion_agreement
from msseg.evaluation.engine import evaluate_masks
from msseg.inference.options import SegmentOptions
from msseg.inference.segment import make_segmenter
from msseg.models.registry import find_model
from msseg.models.sct import SctModel

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"
SPINE = SHARED / "data" / "spine"
UNF = "ivadomed_unf"
#: held-out scan -> (image, manual cord mask, SCT model, thick-slice mm or None)
FAINT_SCANS = {
    "sub-unf01_T2w": (f"{UNF}/sub-unf01/anat/sub-unf01_T2w",
                      f"{UNF}/derivatives/labels/sub-unf01/anat/sub-unf01_T2w_seg-manual",
                      "t2_ax", None),
    "sub-unf01_T2star": (f"{UNF}/sub-unf01/anat/sub-unf01_T2star",
                         f"{UNF}/derivatives/labels/sub-unf01/anat/sub-unf01_T2star_seg-manual",
                         "t2s", None),
    "errsm_24_T2w": ("sct_2014_testing/errsm_24/t2/t2",
                     "sct_2014_testing/errsm_24/t2/t2_manual_segmentation", "t2_ax", None),
    "errsm_24_T2w_7mm": ("sct_2014_testing/errsm_24/t2/t2",
                         "sct_2014_testing/errsm_24/t2/t2_manual_segmentation", "t2_ax", 7.0),
}
FAINT = (1.15, 1.3)
T2_MS = SPINE / "ms_patient_unlabelled/t2_ms/t2.nii.gz"
NOT_LESION_FREE = ("t2_ms", "t2_fake_lesion", "bad_quaternion")


def faint_prior(contrast: str):
    return replace(calibrated_prior(contrast), contrast_range=FAINT, profile_edge=0.0,
                   p_lesion_free=0.0)


def faint_cases(seeds: int):
    """(scan, seed, image, lesion mask, cord mask) of every faint-lesion case."""
    for scan, (image, cord, sct, thick) in FAINT_SCANS.items():
        img, mask = io.load(SPINE / f"{image}.nii.gz"), io.load(SPINE / f"{cord}.nii.gz")
        mask = mask.with_data((mask.data > 0.5).astype(np.uint8))
        contrast = "T2starw" if sct == "t2s" else "T2w"
        for seed in range(seeds):
            result = synthesize_lesions(img, mask, seed=900 + seed, prior=faint_prior(contrast),
                                        n_lesions=3)
            if thick is None:
                yield scan, sct, seed, result.image, result.lesion, mask
            else:
                image_t, cord_t, lesion_t = thick_slices(result, mask, thick)
                yield scan, sct, seed, image_t, lesion_t, cord_t


def faint_table(models: dict, sct: dict, seeds: int) -> pd.DataFrame:
    rows = []
    for scan, contrast, seed, image, lesion, cord in faint_cases(seeds):
        runs = {f"SCT {contrast}": sct[contrast].segment(image, scan, centerline_mask=cord)}
        runs |= {name: seg.segment(image, scan) for name, seg in models.items()}
        for name, result in runs.items():
            metrics, _ = evaluate_masks(result.lesion.data > 0, lesion.data > 0, image.spacing)
            rows.append({"scan": scan, "seed": seed, "model": name.split(" ")[0],
                         "lesion_f1": metrics["lesion_f1"], "lesion_dice": metrics["dice"]})
    return pd.DataFrame(rows)


def t2_ms_table(models: dict, sct: dict) -> pd.DataFrame:
    image = io.load(T2_MS)
    reference = sct["t2_ax"].segment(image, "t2_ms").lesion.data > 0
    rows = [{"model": "SCT t2_ax (automatic centerline)", **_count(reference, image)}]
    for name, seg in models.items():
        result = seg.segment(image, "t2_ms")
        mask = result.lesion.data > 0
        row, _ = lesion_agreement(reference, mask, image.voxel_volume_mm3,
                                  result.cord.data > 0)
        rows.append({"model": name, **_count(mask, image),
                     "of_scts_lesions": f"{row['found_a']} of {row['n_a']}",
                     "outside_own_cord": row["outside_cord_b"]})
    return pd.DataFrame(rows)


def _count(mask: np.ndarray, image) -> dict:
    n = int(cc3d.connected_components(mask, connectivity=26).max())
    return {"lesions": n, "volume_mm3": round(mask.sum() * image.voxel_volume_mm3, 1)}


def lesion_free_scans() -> list[Path]:
    masks = ("seg", "segmentation", "labels", "centerline", "gmseg", "lesion", "mask")
    return sorted(p for p in SPINE.rglob("*.nii.gz")
                  if not {"PAM50", "template"} & set(p.parts)
                  and not any(m in p.name for m in masks)
                  and not any(n in p.name or n in str(p.parent) for n in NOT_LESION_FREE))


def lesion_free_table(models: dict) -> pd.DataFrame:
    rows = []
    for path in lesion_free_scans():
        image = io.load(path)
        name = str(path.relative_to(SPINE))
        for model, seg in models.items():
            mask = seg.segment(image, path.name).lesion.data > 0
            rows.append({"scan": name, "model": model, **_count(mask, image)})
    return pd.DataFrame(rows)


def markdown(table: pd.DataFrame) -> str:
    head = "| " + " | ".join(map(str, table.columns)) + " |"
    rule = "|" + "---|" * len(table.columns)
    body = ["| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row)
            + " |" for row in table.itertuples(index=False)]
    return "\n".join([head, rule, *body])


def section(faint: pd.DataFrame, t2_ms: pd.DataFrame, free: pd.DataFrame) -> str:
    by_scan = faint.pivot_table(index="scan", columns="model", values="lesion_f1",
                                aggfunc="mean").reset_index()
    overall = faint.groupby("model").lesion_f1.mean().to_frame("lesion F1, all cases").T
    overall.insert(0, "scan", "all")
    specificity = free.groupby("model").agg(scans=("lesions", "size"),
                                            with_lesions=("lesions", lambda s: int((s > 0).sum())),
                                            lesions=("lesions", "sum"))
    specificity["specificity"] = 1 - specificity.with_lesions / specificity.scans
    return "\n\n".join([
        f"Measured by `recipes/lesion_calibration/evaluate.py` on {datetime.date.today()}. "
        "Agreement with another model is not ground truth: SCT's released models were trained "
        "on real patients, but they are models too.",
        f"**Faint synthetic lesions** (lesion / white matter {FAINT[0]}–{FAINT[1]}, 3 per "
        "image, in held-out real scans; lesion-wise F1, mean over images; SCT with the manual "
        "cord mask as its centerline):",
        markdown(pd.concat([by_scan, overall.reset_index(drop=True)], ignore_index=True)),
        "**The real MS patient `t2_ms`** (no ground truth; SCT's released `t2_ax` with its "
        "automatic centerline as the reference):",
        markdown(t2_ms),
        "**Lesion-free real scans** (every real spine scan of ../shared/data except `t2_ms` "
        "and SCT's painted lesion; training scans included):",
        markdown(specificity.reset_index())])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="candidate model folder or task")
    parser.add_argument("--previous", default="lesion_ms_axial_t2")
    parser.add_argument("--models", type=Path, default=SHARED / "models" / "sct_deepseg")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--out", type=Path, default=ROOT / "work" / "calibration")
    parser.add_argument("--name", required=True, help="the section's file: results/NAME.md")
    parser.add_argument("--note", default="", help="what the candidate is (one paragraph)")
    parser.add_argument("--tables", type=Path, help="read the tables a run saved there instead")
    args = parser.parse_args()
    if args.tables:
        faint, t2_ms, free = (pd.read_csv(args.tables / f"{n}.csv")
                              for n in ("faint", "t2_ms", "lesion_free"))
    else:
        args.out.mkdir(parents=True, exist_ok=True)
        sct = {c: make_segmenter(SctModel.from_file(args.models / f"{c}_lesion.h5"),
                                 SegmentOptions(postprocessing=False)) for c in ("t2_ax", "t2s")}
        models = {"candidate": make_segmenter(find_model(args.model)),
                  "previous": make_segmenter(find_model(args.previous))}
        faint = faint_table(models, sct, args.seeds)
        t2_ms = t2_ms_table(models, sct)
        free = lesion_free_table(models)
        for name, table in (("faint", faint), ("t2_ms", t2_ms), ("lesion_free", free)):
            table.to_csv(args.out / f"{name}.csv", index=False)
    text = f"# {args.name}\n\n{args.note}\n\n{section(faint, t2_ms, free)}\n"
    out = Path(__file__).with_name("results") / f"{args.name}.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
