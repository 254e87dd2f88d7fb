"""Build the data of the bundled `brain_lesion_flair` model and of the cross-dataset demo.

3D-MR-MS (../shared/data/brain/3d-mr-ms, MNI space 182x218x182 @ 1 mm): patients 07 and 19
have a real FLAIR and a consensus lesion mask; 27 more patients have the mask alone. Patient 19
is kept for validation, real and untouched. Training images: patient 07's real FLAIR, and
patient 07's FLAIR with each of the 27 other masks inserted (real lesion shapes and positions,
intensities modelled on patient 07's own lesions, msseg.data.brain_synthesis).

Cross-dataset demo (``--experiment``): three semi-synthetic "sites" built from patient 07's
background with disjoint sets of 9 inserted masks each, differing by a scanner-like intensity
transform (site_a as acquired; site_b gamma 1.5, x4 scale, 20% bias field; site_c gamma 0.7,
x0.3 scale, noise), plus "real" = both real patients (07, 19).

Usage: .venv/bin/python recipes/brain_lesion_flair/build_data.py [--shared ../shared/data]
         [--out work/brain_lesion_flair]
Writes OUT/data/*.nii.gz, OUT/dataset.json (fold 0 = patient 19, validation) and
OUT/sites/<name>/index.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import nibabel as nib
import numpy as np

from msseg import io
from msseg.data.brain_synthesis import ScannerLike, insert_lesions, measure_lesion_intensity
from msseg.data.index import Record, save_index

FLAIR = "FLAIR_N4_noneck_reduced_winsor_regtoFLAIR_brain_N4_regtoMNI.nii.gz"
MASK = "GOLD_STANDARD_N4_noneck_reduced_winsor_regtoFLAIR_regtoMNI.nii.gz"
SITES = {"site_a": ScannerLike(),
         "site_b": ScannerLike(gamma=1.5, scale=4.0, bias=0.2),
         "site_c": ScannerLike(gamma=0.7, scale=0.3, noise=0.04)}


def record(image: Path, brain: Path, lesion: Path, patient: str, fold: int | None) -> Record:
    header = nib.load(str(image)).header
    return Record(str(image), str(brain), str(lesion), "FLAIR",
                  "".join(nib.aff2axcodes(header.get_best_affine())),
                  tuple(float(z) for z in header.get_zooms()[:3]),
                  tuple(int(n) for n in header.get_data_shape()[:3]), patient, None, "3dmrms",
                  None, fold)


def write_case(out: Path, stem: str, image, data: np.ndarray, lesion: np.ndarray,
               patient: str, fold: int | None) -> Record:
    paths = [out / f"{stem}.nii.gz", out / f"{stem}_brain.nii.gz", out / f"{stem}_lesion.nii.gz"]
    io.save_like(data, image, paths[0], dtype=np.float32)
    io.save_like(data > 0, image, paths[1])
    io.save_like(lesion, image, paths[2])
    return record(*paths, patient, fold)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("work/brain_lesion_flair"))
    parser.add_argument("--experiment", action="store_true", help="also build the demo sites")
    args = parser.parse_args()
    mni = args.shared / "brain" / "3d-mr-ms" / "MNI"
    data = args.out / "data"
    data.mkdir(parents=True, exist_ok=True)
    background = io.load(mni / "patient07" / FLAIR)
    own = io.load(mni / "patient07" / MASK).data > 0
    flair = background.data.astype(np.float32)
    model = measure_lesion_intensity(flair, own)
    print(f"patient07: {len(model.ratios)} lesions measured, intensity ratio median "
          f"{np.median(model.ratios):.2f}, noise {model.noise_std:.3f}")
    others = sorted(p for p in mni.iterdir() if p.name not in ("patient07", "patient19"))
    records = [write_case(data, "patient07_real", background, flair, own, "patient07", 1)]
    val = io.load(mni / "patient19" / FLAIR)
    records.append(write_case(data, "patient19_real", val, val.data.astype(np.float32),
                              io.load(mni / "patient19" / MASK).data > 0, "patient19", 0))
    inserted = {}
    for k, folder in enumerate(others):
        new = io.load(folder / MASK).data > 0
        image, label = insert_lesions(flair, own, new, model, seed=k)
        inserted[folder.name] = (image, label)
        # each semi-synthetic image is its own "patient" for sampling, fold 1 = training
        records.append(write_case(data, f"p07_with_{folder.name}", background, image, label,
                                  f"p07_with_{folder.name}", 1))
    save_index(records, args.out / "dataset.json")
    print(f"{len(records)} records -> {args.out / 'dataset.json'}")
    if args.experiment:
        names = sorted(inserted)
        for s, (site, transform) in enumerate(SITES.items()):
            folder = args.out / "sites" / site
            folder.mkdir(parents=True, exist_ok=True)
            recs = []
            for name in names[s * 9:(s + 1) * 9]:
                image, label = inserted[name]
                recs.append(write_case(folder, f"{site}_{name}", background,
                                       transform.apply(image, seed=s), label, f"{site}_{name}",
                                       None))
            save_index(recs, folder / "index.json")
        real = [r.__class__(**{**r.__dict__, "fold": None}) for r in records[:2]]
        save_index(real, args.out / "sites" / "real" / "index.json")
        print(f"sites -> {args.out / 'sites'}")


if __name__ == "__main__":
    main()
