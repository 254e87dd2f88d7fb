"""Build the training and validation data of the bundled `lesion_ms_axial_t2` model.

Real cord scans of ../shared/data/spine (axial ones as they are, 1 mm sagittal ones resliced
axially by the RPI reorientation of the training pipeline) with lesions synthesised into them,
plus domain-randomised synthetic spines from the PAM50 label maps. Two subjects are held out for
validation: errsm_24 (sagittal T2w, axial MT) and sub-unf01 (T2w, T2*w, T1w).

Usage: .venv/bin/python recipes/lesion_ms_axial_t2/build_data.py [--shared ../shared/data]
         [--out work/lesion_ms_axial_t2] [--versions 5] [--synthetic 40]
         [--calibrated 4 --thick 4]
Writes images and masks under OUT/data/ and the dataset index OUT/dataset.json (fold 0 =
validation, fold 1 = training).

``--calibrated N --thick M`` (the calibration of recipes/lesion_calibration) add to the
training fold only, the validation fold staying as it was: N more versions of each
hyperintense-contrast training scan with lesions of the calibrated prior (white-matter columns,
faint to bright, fainter rims: msseg.data.lesion_synthesis.calibrated_prior), and for each
sagittal 1 mm T2w training scan M thick-slice axial versions (5 or 7 mm, as axial T2w is often
acquired, lesions synthesised at 1 mm then partial-volumed: thick_slices) plus one without
lesions.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import nibabel as nib
import numpy as np

from msseg import io
from msseg.data.index import Record, save_index
from msseg.data.lesion_synthesis import (
    LesionPrior,
    calibrated_prior,
    synthesize_lesions,
    thick_slices,
    write_lesion_versions,
)
from msseg.data.synthetic_spine import synthetic_spine

# (patient, contrast, image, cord mask, lesion mask or None), relative to shared/data/spine
TRAIN = [
    ("test001", "T2starw", "ivadomed_testing/sub-test001_T2star_at17d1835",
     "ivadomed_testing/sub-test001_T2star_seg-manual_at17d1835", None),
    ("test001", "T2w", "ivadomed_testing/sub-test001_T2w-sag_at38ada34",
     "ivadomed_testing/sub-test001_seg-manual_at38ada34", None),
    ("errsm_11", "T2w", "sct_2014_testing/errsm_11/t2/t2",
     "sct_2014_testing/errsm_11/t2/t2_manual_segmentation", None),
    ("errsm_18", "T2w", "sct_2014_testing/errsm_18/t2/t2",
     "sct_2014_testing/errsm_18/t2/t2_manual_segmentation", None),
    ("errsm_18", "T2starw", "sct_2014_testing/errsm_18/gre/gre",
     "sct_2014_testing/errsm_18/gre/segmentation_binary", None),
    ("errsm_21", "T2w", "sct_2014_testing/errsm_21/t2/t2",
     "sct_2014_testing/errsm_21/t2/t2_manual_segmentation", None),
    ("errsm_23", "T2w", "sct_2014_testing/errsm_23/t2/t2",
     "sct_2014_testing/errsm_23/t2/t2_manual_segmentation", None),
    ("errsm_23", "MTS", "sct_2014_testing/errsm_23/mt/mt1",
     "sct_2014_testing/errsm_23/mt/segmentation_binary", None),
    ("sct_t2", "T2w", "sct_testing_data/t2/t2", "sct_testing_data/t2/t2_seg-manual", None),
    ("sct_t2s", "T2starw", "sct_testing_data/t2s/t2s", "sct_testing_data/t2s/t2s_seg", None),
    ("sct_t1", "T1w", "sct_testing_data/t1/t1w", "sct_testing_data/t1/t1w_seg-manual", None),
    ("sct_fake_lesion", "T2w", "sct_testing_data/t2/t2_fake_lesion",
     "sct_testing_data/t2/t2_fake_lesion_sc_seg", "sct_testing_data/t2/t2_fake_lesion_lesion_seg"),
]
VALIDATION = [
    ("errsm_24", "T2w", "sct_2014_testing/errsm_24/t2/t2",
     "sct_2014_testing/errsm_24/t2/t2_manual_segmentation", None),
    ("errsm_24", "MTS", "sct_2014_testing/errsm_24/mt/mt1",
     "sct_2014_testing/errsm_24/mt/segmentation_binary", None),
    ("unf01", "T2w", "ivadomed_unf/sub-unf01/anat/sub-unf01_T2w",
     "ivadomed_unf/derivatives/labels/sub-unf01/anat/sub-unf01_T2w_seg-manual", None),
    ("unf01", "T2starw", "ivadomed_unf/sub-unf01/anat/sub-unf01_T2star",
     "ivadomed_unf/derivatives/labels/sub-unf01/anat/sub-unf01_T2star_seg-manual", None),
    ("unf01", "T1w", "ivadomed_unf/sub-unf01/anat/sub-unf01_T1w",
     "ivadomed_unf/derivatives/labels/sub-unf01/anat/sub-unf01_T1w_seg-manual", None),
]
HYPERINTENSE = {"T2w", "T2starw", "MTS"}  # T1w lesions are not hyperintense: left lesion-free


def record(image: Path, cord: Path, lesion: Path | None, patient: str, contrast: str,
           fold: int) -> Record:
    header = nib.load(str(image)).header
    return Record(str(image), str(cord), None if lesion is None else str(lesion), contrast,
                  "".join(nib.aff2axcodes(header.get_best_affine())),
                  tuple(float(z) for z in header.get_zooms()[:3]),
                  tuple(int(n) for n in header.get_data_shape()[:3]),
                  patient, None, patient.split("_")[0], None, fold)


def real_cases(spine: Path, out: Path, entries, fold: int, versions: int, seed0: int,
               prior: LesionPrior) -> list[Record]:
    records = []
    for k, (patient, contrast, image, cord, lesion) in enumerate(entries):
        img_path, cord_path = spine / f"{image}.nii.gz", spine / f"{cord}.nii.gz"
        les_path = None if lesion is None else spine / f"{lesion}.nii.gz"
        records.append(record(img_path, cord_path, les_path, patient, contrast, fold))
        if contrast not in HYPERINTENSE or les_path is not None:
            continue
        seeds = [seed0 + 100 * k + v for v in range(versions)]
        for paths in write_lesion_versions(img_path, cord_path, out, f"{patient}_{contrast}",
                                           seeds, prior):
            records.append(record(*paths, patient, contrast, fold))
    return records


def calibrated_cases(spine: Path, out: Path, entries, versions: int, seed0: int
                     ) -> list[Record]:
    """``versions`` copies of each hyperintense-contrast training scan with calibrated lesions."""
    records = []
    for k, (patient, contrast, image, cord, lesion) in enumerate(entries):
        if contrast not in HYPERINTENSE or lesion is not None or versions == 0:
            continue
        seeds = [seed0 + 100 * k + v for v in range(versions)]
        for paths in write_lesion_versions(spine / f"{image}.nii.gz", spine / f"{cord}.nii.gz",
                                           out, f"{patient}_{contrast}_cal", seeds,
                                           calibrated_prior(contrast)):
            records.append(record(*paths, patient, contrast, 1))
    return records


def thick_cases(spine: Path, out: Path, entries, versions: int, seed0: int) -> list[Record]:
    """Thick-slice axial versions of the sagittal 1 mm T2w training scans (see module)."""
    records = []
    for k, (patient, contrast, image, cord, lesion) in enumerate(entries):
        img_path = spine / f"{image}.nii.gz"
        if contrast != "T2w" or lesion is not None or versions == 0 or \
                nib.aff2axcodes(nib.load(str(img_path)).affine)[2] in ("S", "I"):
            continue                                  # axial already, or a painted lesion
        scan, mask = io.load(img_path), io.load(spine / f"{cord}.nii.gz")
        mask = mask.with_data((mask.data > 0.5).astype(np.uint8))
        for v in range(versions + 1):
            rng = np.random.default_rng(seed0 + 100 * k + v)
            result = synthesize_lesions(scan, mask, seed=seed0 + 100 * k + v,
                                        prior=calibrated_prior("T2w"),
                                        n_lesions=0 if v == versions else None)
            thickness = float(rng.choice([5.0, 7.0]))
            paths = [out / f"{patient}_T2w_thick{v}{s}.nii.gz" for s in ("", "_cord", "_lesion")]
            for made, path in zip(thick_slices(result, mask, thickness), paths, strict=True):
                io.save(made, path)
            records.append(record(*paths, patient, contrast, 1))
    return records


def synthetic_cases(pam50: Path, out: Path, n: int) -> list[Record]:
    records = []
    for i in range(n):
        image, cord, lesion = synthetic_spine(pam50, seed=1000 + i)
        paths = [out / f"pam50synth{i:03d}.nii.gz", out / f"pam50synth{i:03d}_cord.nii.gz",
                 out / f"pam50synth{i:03d}_lesion.nii.gz"]
        io.save(image, paths[0])
        io.save(cord, paths[1])
        io.save(lesion, paths[2])
        records.append(record(*paths, f"pam50synth{i:03d}", "synthetic", 1))
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("work/lesion_ms_axial_t2"))
    parser.add_argument("--versions", type=int, default=5)
    parser.add_argument("--synthetic", type=int, default=40)
    parser.add_argument("--calibrated", type=int, default=0,
                        help="versions with calibrated lesions per hyperintense training scan")
    parser.add_argument("--thick", type=int, default=0,
                        help="thick-slice axial versions per sagittal T2w training scan")
    args = parser.parse_args()
    spine, data = args.shared / "spine", args.out / "data"
    data.mkdir(parents=True, exist_ok=True)
    train = real_cases(spine, data, TRAIN, 1, args.versions, 0, LesionPrior())
    # validation: every held-out scan twice with lesions (at least one each), plus as is
    val = real_cases(spine, data / "val", VALIDATION, 0, 2, 5000,
                     LesionPrior(p_lesion_free=0.0))
    train += synthetic_cases(spine / "PAM50", data / "synthetic", args.synthetic)
    train += calibrated_cases(spine, data / "calibrated", TRAIN, args.calibrated, 7000)
    train += thick_cases(spine, data / "thick", TRAIN, args.thick, 8000)
    save_index(train + val, args.out / "dataset.json")
    print(f"{len(train)} training and {len(val)} validation images -> {args.out}/dataset.json")


if __name__ == "__main__":
    main()
