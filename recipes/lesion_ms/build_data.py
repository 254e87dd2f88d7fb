"""Build the data of the contrast-agnostic `lesion_ms` experiment (the multi-contrast system).

Real cord scans of ../shared/data/spine (T2w axial and sagittal, T2*w, MT, T1w; held-out
subjects errsm_24 and sub-unf01 as in `lesion_ms_axial_t2`), each also with lesions synthesised
with its contrast's appearance (msseg.data.lesion_synthesis.prior_for_contrast: hyperintense on
T2w/T2*w/MT, hypointense on T1w), plus synthetic PSIR, STIR and MP2RAGE-UNIT1 spines made from the
PAM50 label maps (msseg.data.synthetic_spine.synthetic_contrast_spine), in the multi-contrast
paper's unbalanced proportions: most scans T2w, PSIR about 8%, STIR about 2%. Held-out synthetic
PSIR/STIR/UNIT1 spines use seeds no training spine uses.

A second index, the pretraining corpus: domain-randomised PAM50 spines of every tissue ordering
(random, PSIR, STIR, UNIT1) with synthesised lesions — a large, varied corpus that holds none of
the real scans (its own fold 0, every tenth spine, picks its best epoch) — from which the
fine-tuning regime starts.

Usage: .venv/bin/python recipes/lesion_ms/build_data.py [--shared ../shared/data]
         [--out work/lesion_ms] [--versions 3] [--pretrain 200]
Writes OUT/dataset.json (fold 0 = held-out, fold 1 = training) and OUT/pretrain.json.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import nibabel as nib

from msseg import io
from msseg.data.index import Record, save_index
from msseg.data.lesion_synthesis import LesionPrior, prior_for_contrast, write_lesion_versions
from msseg.data.synthetic_spine import synthetic_contrast_spine, synthetic_spine

# (patient, contrast, image, cord mask), relative to shared/data/spine
TRAIN = [
    ("test001", "T2starw", "ivadomed_testing/sub-test001_T2star_at17d1835",
     "ivadomed_testing/sub-test001_T2star_seg-manual_at17d1835"),
    ("test001", "T2w", "ivadomed_testing/sub-test001_T2w-sag_at38ada34",
     "ivadomed_testing/sub-test001_seg-manual_at38ada34"),
    ("errsm_11", "T2w", "sct_2014_testing/errsm_11/t2/t2",
     "sct_2014_testing/errsm_11/t2/t2_manual_segmentation"),
    ("errsm_18", "T2w", "sct_2014_testing/errsm_18/t2/t2",
     "sct_2014_testing/errsm_18/t2/t2_manual_segmentation"),
    ("errsm_18", "T2starw", "sct_2014_testing/errsm_18/gre/gre",
     "sct_2014_testing/errsm_18/gre/segmentation_binary"),
    ("errsm_21", "T2w", "sct_2014_testing/errsm_21/t2/t2",
     "sct_2014_testing/errsm_21/t2/t2_manual_segmentation"),
    ("errsm_23", "T2w", "sct_2014_testing/errsm_23/t2/t2",
     "sct_2014_testing/errsm_23/t2/t2_manual_segmentation"),
    ("errsm_23", "MTS", "sct_2014_testing/errsm_23/mt/mt1",
     "sct_2014_testing/errsm_23/mt/segmentation_binary"),
    ("sct_t2", "T2w", "sct_testing_data/t2/t2", "sct_testing_data/t2/t2_seg-manual"),
    ("sct_t2s", "T2starw", "sct_testing_data/t2s/t2s", "sct_testing_data/t2s/t2s_seg"),
    ("sct_t1", "T1w", "sct_testing_data/t1/t1w", "sct_testing_data/t1/t1w_seg-manual"),
]
HELD_OUT = [
    ("errsm_24", "T2w", "sct_2014_testing/errsm_24/t2/t2",
     "sct_2014_testing/errsm_24/t2/t2_manual_segmentation"),
    ("errsm_24", "MTS", "sct_2014_testing/errsm_24/mt/mt1",
     "sct_2014_testing/errsm_24/mt/segmentation_binary"),
    ("unf01", "T2w", "ivadomed_unf/sub-unf01/anat/sub-unf01_T2w",
     "ivadomed_unf/derivatives/labels/sub-unf01/anat/sub-unf01_T2w_seg-manual"),
    ("unf01", "T2starw", "ivadomed_unf/sub-unf01/anat/sub-unf01_T2star",
     "ivadomed_unf/derivatives/labels/sub-unf01/anat/sub-unf01_T2star_seg-manual"),
    ("unf01", "T1w", "ivadomed_unf/sub-unf01/anat/sub-unf01_T1w",
     "ivadomed_unf/derivatives/labels/sub-unf01/anat/sub-unf01_T1w_seg-manual"),
]
#: Synthetic scans of the contrasts the shared data lacks: (training, held-out) counts. With
#: `--versions 3` the real training scans give 44 images, so PSIR is ~8%, STIR ~2%.
SYNTHETIC_CONTRASTS = {"PSIR": (4, 3), "STIR": (1, 3), "UNIT1": (3, 3)}
PRETRAIN_ORDERINGS = (None, "PSIR", "STIR", "UNIT1")   # None: random tissue intensities


def record(paths: list[Path], patient: str, contrast: str, site: str, fold: int) -> Record:
    header = nib.load(str(paths[0])).header
    lesion = str(paths[2]) if len(paths) > 2 and paths[2] is not None else None
    return Record(str(paths[0]), str(paths[1]), lesion, contrast,
                  "".join(nib.aff2axcodes(header.get_best_affine())),
                  tuple(float(z) for z in header.get_zooms()[:3]),
                  tuple(int(n) for n in header.get_data_shape()[:3]),
                  patient, None, site, None, fold)


def real_cases(spine: Path, out: Path, entries, fold: int, versions: int, seed0: int,
               base: LesionPrior) -> list[Record]:
    """Each real scan as acquired, and ``versions`` copies with lesions of its contrast."""
    records = []
    for k, (patient, contrast, image, cord) in enumerate(entries):
        img_path, cord_path = spine / f"{image}.nii.gz", spine / f"{cord}.nii.gz"
        site = patient.split("_")[0]
        records.append(record([img_path, cord_path], patient, contrast, site, fold))
        seeds = [seed0 + 100 * k + v for v in range(versions)]
        for paths in write_lesion_versions(img_path, cord_path, out, f"{patient}_{contrast}",
                                           seeds, prior_for_contrast(contrast, base)):
            records.append(record(paths, patient, contrast, site, fold))
    return records


def synthetic_cases(pam50: Path, out: Path, contrast: str | None, seeds, fold: int,
                    prior: LesionPrior, tag: str) -> list[Record]:
    records = []
    for seed in seeds:
        if contrast is None:
            image, cord, lesion = synthetic_spine(pam50, seed=seed, prior=prior)
        else:
            image, cord, lesion = synthetic_contrast_spine(pam50, contrast, seed=seed,
                                                           prior=prior)
        name = f"{tag}_{contrast or 'random'}_{seed:05d}"
        paths = [out / f"{name}.nii.gz", out / f"{name}_cord.nii.gz",
                 out / f"{name}_lesion.nii.gz"]
        io.save(image, paths[0])
        io.save(cord, paths[1])
        io.save(lesion, paths[2])
        records.append(record(paths, name, contrast or "synthetic", "pam50", fold))
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("work/lesion_ms"))
    parser.add_argument("--versions", type=int, default=3)
    parser.add_argument("--pretrain", type=int, default=200,
                        help="synthetic spines in the pretraining corpus")
    args = parser.parse_args()
    spine, data, pam50 = args.shared / "spine", args.out / "data", args.shared / "spine/PAM50"
    data.mkdir(parents=True, exist_ok=True)
    train = real_cases(spine, data, TRAIN, 1, args.versions, 0, LesionPrior())
    held = real_cases(spine, data / "val", HELD_OUT, 0, 2, 5000, LesionPrior(p_lesion_free=0.0))
    for contrast, (n_train, n_held) in SYNTHETIC_CONTRASTS.items():
        train += synthetic_cases(pam50, data / "synthetic", contrast, range(n_train), 1,
                                 LesionPrior(), "train")
        held += synthetic_cases(pam50, data / "val", contrast, range(9000, 9000 + n_held), 0,
                                LesionPrior(p_lesion_free=0.0), "heldout")
    save_index(train + held, args.out / "dataset.json")
    corpus = []
    for k in range(args.pretrain):   # orderings in turn; seeds no other image uses; every
        contrast = PRETRAIN_ORDERINGS[k % len(PRETRAIN_ORDERINGS)]   # 10th picks the best epoch
        corpus += synthetic_cases(pam50, data / "pretrain", contrast, [20000 + k],
                                  0 if k % 10 == 9 else 1, LesionPrior(), "pretrain")
    save_index(corpus, args.out / "pretrain.json")
    mix = Counter(r.contrast for r in train)
    print(f"{len(train)} training images ({', '.join(f'{c} {n}' for c, n in mix.most_common())}),"
          f" {len(held)} held-out, {args.pretrain} pretraining spines -> {args.out}")


if __name__ == "__main__":
    main()
