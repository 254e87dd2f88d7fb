"""Leave-one-patient-out data of the generalising brain FLAIR model (issue 16).

3D-MR-MS has two patients with a real FLAIR (07 and 19, MNI space, same grid) and 27 more real
consensus masks. For each real background B (07, 19): B's real FLAIR with its real mask, and
B's FLAIR with each of the 27 other masks inserted (msseg.data.brain_synthesis, intensities
modelled on B's own lesions). Every fifth inserted image (masks 0, 5, ..., 25: 6 of 27) is
validation (fold 0: best epoch, threshold and minimum lesion size); the rest and the real
image are training (fold 1). The other patient's real FLAIR is the test case: never trained
on, never used to choose anything. ``both``: the union of the two backgrounds' records, for
the bundled model (its validation: the 12 held-out insertions, 6 per background). For the
ablations, the test patient also under 8 scanner-like intensity shifts (gamma 0.6–1.6, ×0.3–4
scale, 15–30% bias field, noise: ``SHIFTS``), ``test_shifted.json``.

Usage: .venv/bin/python recipes/brain_lesion_flair/build_lopo.py [--shared ../shared/data]
         [--out work/brain_lesion_flair/lopo]
Writes OUT/data/*.nii.gz, OUT/train_on_{07,19}/dataset.json, test.json and test_shifted.json,
OUT/both/dataset.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from build_data import FLAIR, MASK, record, write_case

from msseg import io
from msseg.data.brain_synthesis import ScannerLike, insert_lesions, measure_lesion_intensity
from msseg.data.index import Record, save_index

PATIENTS = ("07", "19")
SHIFTS = (ScannerLike(gamma=0.6), ScannerLike(gamma=1.6), ScannerLike(scale=0.3, gamma=0.8),
          ScannerLike(scale=4.0, gamma=1.25), ScannerLike(bias=0.15), ScannerLike(bias=0.3),
          ScannerLike(gamma=1.25, bias=0.2, noise=0.03), ScannerLike(gamma=0.8, noise=0.05))


def shifted(test: Record, data: Path, patient: str) -> list[Record]:
    """The real test image under each of :data:`SHIFTS` (its mask unchanged)."""
    image = io.load(test.image)
    lesion = io.load(test.lesion).data > 0
    out = []
    for k, transform in enumerate(SHIFTS):
        data_k = transform.apply(image.data.astype(np.float32), seed=k)
        out.append(write_case(data, f"p{patient}_real_shift-{k}", image, data_k, lesion,
                              f"patient{patient}", None))
    return out


def background_records(mni: Path, data: Path, patient: str) -> list[Record]:
    """The real image (fold 1) and the 27 insertions (every fifth fold 0, the rest fold 1)."""
    name = f"patient{patient}"
    background = io.load(mni / name / FLAIR)
    own = io.load(mni / name / MASK).data > 0
    flair = background.data.astype(np.float32)
    model = measure_lesion_intensity(flair, own)
    print(f"{name}: {len(model.ratios)} lesions measured, intensity ratio median "
          f"{np.median(model.ratios):.2f}")
    records = [write_case(data, f"p{patient}_real", background, flair, own, name, 1)]
    others = sorted(p for p in mni.iterdir() if p.name not in {f"patient{q}" for q in PATIENTS})
    for k, folder in enumerate(others):
        stem = f"p{patient}_with_{folder.name}"
        paths = [data / f"{stem}{s}.nii.gz" for s in ("", "_brain", "_lesion")]
        fold = 0 if k % 5 == 0 else 1
        if all(p.is_file() for p in paths):
            records.append(record(*paths, stem, fold))
            continue
        image, label = insert_lesions(flair, own, io.load(folder / MASK).data > 0, model,
                                      seed=k)
        records.append(write_case(data, stem, background, image, label, stem, fold))
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("work/brain_lesion_flair/lopo"))
    args = parser.parse_args()
    mni = args.shared / "brain" / "3d-mr-ms" / "MNI"
    data = args.out / "data"
    data.mkdir(parents=True, exist_ok=True)
    per_background = {p: background_records(mni, data, p) for p in PATIENTS}
    for patient, records in per_background.items():
        other = next(q for q in PATIENTS if q != patient)
        test = next(r for r in per_background[other] if r.image.endswith(f"p{other}_real.nii.gz"))
        folder = args.out / f"train_on_{patient}"
        save_index(records, folder / "dataset.json")
        save_index([Record(**{**test.__dict__, "fold": None})], folder / "test.json")
        save_index(shifted(test, data, other), folder / "test_shifted.json")
        print(f"train on {patient}: {sum(r.fold == 1 for r in records)} training, "
              f"{sum(r.fold == 0 for r in records)} validation; test = real patient {other}")
    save_index([r for p in PATIENTS for r in per_background[p]],
               args.out / "both" / "dataset.json")


if __name__ == "__main__":
    main()
