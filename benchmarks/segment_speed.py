"""Speed of `msseg segment` with crop acceleration against the same model without it.

For each real scan, the bundled `lesion_ms_axial_t2` model segments the image three times in
this run — default (fast cord localisation + crop), `--no-crop` (whole field of view) and crop
with `--backend onnx` (ONNX Runtime) — after one warm-up call each; prints seconds, the ratios
and the Dice agreement of the outputs.

Run: .venv/bin/python benchmarks/segment_speed.py [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from msseg import io
from msseg.evaluation.voxel import dice
from msseg.inference.segment import Segmenter, SegmentOptions
from msseg.models.registry import find_model

SCANS = ("spine/ms_patient_unlabelled/t2_ms/t2.nii.gz",
         "spine/sct_2014_testing/errsm_18/gre/gre.nii.gz",
         "spine/ivadomed_testing/sub-test001_T2star_at17d1835.nii.gz")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).parents[2] / "shared/data")
    args = parser.parse_args()
    model = find_model("lesion_ms_axial_t2")
    crop, full = (Segmenter(model, SegmentOptions(crop=c)) for c in (True, False))
    onnx = Segmenter(model, SegmentOptions(backend="onnx"))
    for warm in (crop, onnx):
        warm.segment(io.load(args.data / SCANS[0]))  # warm-up (kernel selection, caches)
    total_crop = total_full = total_onnx = 0.0
    for rel in SCANS:
        image = io.load(args.data / rel)
        t0 = time.perf_counter()
        a = crop.segment(image)
        t1 = time.perf_counter()
        b = full.segment(image)
        t2 = time.perf_counter()
        c = onnx.segment(image)
        t3 = time.perf_counter()
        total_crop += t1 - t0
        total_full += t2 - t1
        total_onnx += t3 - t2
        print(f"{Path(rel).name:40s} {str(image.shape):16s} crop {t1 - t0:6.1f} s  "
              f"no-crop {t2 - t1:6.1f} s  ratio {(t2 - t1) / (t1 - t0):4.1f}x  "
              f"Dice cord {dice(a.cord.data > 0, b.cord.data > 0):.4f} "
              f"lesion {dice(a.lesion.data > 0, b.lesion.data > 0):.4f}  |  onnx {t3 - t2:5.1f} s"
              f" (Dice cord vs torch {dice(a.cord.data > 0, c.cord.data > 0):.4f})")
    print(f"all scans: ratio no-crop / crop = {total_full / total_crop:.1f}x, "
          f"torch / onnx (both cropped) = {total_crop / total_onnx:.2f}x")


if __name__ == "__main__":
    main()
