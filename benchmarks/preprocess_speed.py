"""Time and peak memory of `msseg stitch`, `msseg straighten` and `msseg warp` on large volumes,
each against SimpleITK doing the resampling part of the same job, in one run.

* stitch: three chunks of 512×512×40 (0.5×0.5×3 mm, overlapping by 8 slices, the middle one on
  a grid rotated by 2°) cut from the real MS scan ``t2_ms`` resampled to that grid; msseg's full
  stitch (grid, cubic resampling, ramp blending, a lesion label map stitched by majority)
  against SimpleITK resampling each chunk onto the same output grid (linear) and averaging
  where chunks overlap (no ramp, no labels) — the core of a naive stitcher.
* straighten: a 384×384×60 scan (``t2_ms`` resampled, 0.58×0.46×2.4 mm) with its cord from
  msseg's stage-1 centerline: msseg's straighten (curve, frame, straightened image, both
  displacement fields) against SimpleITK applying the curve-to-straight field to the image.
* warp: msseg warp of the scan through that field against SimpleITK's resampling through it.

Each measurement runs in a fresh interpreter, so its peak RSS is its own; medians of
``--repeats`` runs.

Run: .venv/bin/python benchmarks/preprocess_speed.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

from msseg import io
from msseg.image import Image
from msseg.preprocess.resample import resample_to_grid

ROOT = Path(__file__).resolve().parents[1]
PEAK = "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024"


def make_data(data: Path, work: Path) -> None:
    if (work / "scan_384.nii.gz").exists():
        return
    work.mkdir(parents=True, exist_ok=True)
    scan = io.load(data / "spine/ms_patient_unlabelled/t2_ms/t2.nii.gz")
    extent = np.asarray(scan.shape) * np.asarray(scan.spacing)
    for shape, name in (((384, 384, 60), "scan_384"), ((512, 512, 104), "whole")):
        spacing = extent / np.asarray(shape)
        affine = scan.affine @ np.diag([*(spacing / scan.spacing), 1.0])
        affine[:3, 3] = scan.world_coordinates(np.array([0.5 * spacing / scan.spacing
                                                         - 0.5]))[0]
        io.save(resample_to_grid(scan, shape, affine, order=1), work / f"{name}.nii.gz")
    whole = io.load(work / "whole.nii.gz")
    rng = np.random.default_rng(0)
    lesion = (rng.random(whole.shape) > 0.9995).astype(np.uint8)
    for n, (k0, k1) in enumerate(((0, 40), (32, 72), (64, 104)), start=1):
        part = whole.crop((slice(None), slice(None), slice(k0, k1)))
        label = Image(lesion[:, :, k0:k1], part.affine)
        if n == 2:
            a = np.radians(2)
            rotation = np.eye(4)
            rotation[1:3, 1:3] = [[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]
            affine = rotation @ part.affine
            part = resample_to_grid(part, part.shape, affine, order=1)
            label = resample_to_grid(label, label.shape, affine, order=0)
        io.save(part, work / f"c_chunk-{n}_T2w.nii.gz")
        io.save(label, work / f"c_chunk-{n}_T2w_label-lesion_seg.nii.gz")


def child(script: str) -> dict:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True,
                          text=True, timeout=3600)
    if done.returncode:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def msseg_cli(argv: list[str]) -> str:
    return f"""
        import json, resource, time
        from msseg.cli.main import main
        t = time.perf_counter()
        assert main({argv!r}) == 0
        print(json.dumps({{"seconds": time.perf_counter() - t, "peak_mb": {PEAK}}}))
        """


def sitk_stitch(work: Path) -> str:
    chunks = [str(work / f"c_chunk-{n}_T2w.nii.gz") for n in (1, 2, 3)]
    return f"""
        import json, resource, time
        import SimpleITK as sitk
        t = time.perf_counter()
        ref = sitk.ReadImage({str(work / "stitched.nii.gz")!r})
        total = sitk.Image(ref.GetSize(), sitk.sitkFloat32); total.CopyInformation(ref)
        count = sitk.Image(ref.GetSize(), sitk.sitkFloat32); count.CopyInformation(ref)
        for path in {chunks!r}:
            chunk = sitk.Cast(sitk.ReadImage(path), sitk.sitkFloat32)
            total += sitk.Resample(chunk, ref, sitk.Transform(), sitk.sitkLinear, 0.0)
            ones = chunk * 0 + 1
            count += sitk.Resample(ones, ref, sitk.Transform(), sitk.sitkNearestNeighbor, 0.0)
        out = sitk.Divide(total, sitk.Maximum(count, 1.0))
        sitk.WriteImage(out, {str(work / "sitk_stitched.nii.gz")!r})
        print(json.dumps({{"seconds": time.perf_counter() - t, "peak_mb": {PEAK}}}))
        """


def sitk_warp(image: Path, warp: Path, ref: Path, out: Path) -> str:
    return f"""
        import json, resource, time
        import SimpleITK as sitk
        t = time.perf_counter()
        field = sitk.ReadImage({str(warp)!r}, sitk.sitkVectorFloat64)
        transform = sitk.DisplacementFieldTransform(field)
        moved = sitk.Resample(sitk.ReadImage({str(image)!r}), sitk.ReadImage({str(ref)!r}),
                              transform, sitk.sitkLinear, 0.0)
        sitk.WriteImage(moved, {str(out)!r})
        print(json.dumps({{"seconds": time.perf_counter() - t, "peak_mb": {PEAK}}}))
        """


def report(label: str, runs: dict[str, list[dict]]) -> None:
    base = statistics.median(r["seconds"] for r in runs["msseg"])
    for side, values in runs.items():
        seconds = statistics.median(r["seconds"] for r in values)
        peak = statistics.median(r["peak_mb"] for r in values)
        each = ", ".join(f"{r['seconds']:.1f}" for r in values)
        print(f"{label:12s} {side:10s} {seconds:6.1f} s (runs {each})  peak {peak:6.0f} MB"
              + ("" if side == "msseg" else f"  msseg / {side}: {base / seconds:.2f}x time"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--work", type=Path, default=Path("/tmp/msseg-bench-preprocess"))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    make_data(args.data, args.work)
    w = args.work
    chunks = [str(w / f"c_chunk-{n}_T2w.nii.gz") for n in (1, 2, 3)]
    labels = [str(w / f"c_chunk-{n}_T2w_label-lesion_seg.nii.gz") for n in (1, 2, 3)]
    stitch = msseg_cli(["stitch", *chunks, "-o", str(w / "stitched.nii.gz"), "--labels",
                        *labels, "--overwrite"])
    runs = {"msseg": [child(stitch) for _ in range(args.repeats)]}
    runs["SimpleITK"] = [child(sitk_stitch(w)) for _ in range(args.repeats)]
    report("stitch", runs)
    straighten = msseg_cli(["straighten", "-i", str(w / "scan_384.nii.gz"), "-o",
                            str(w / "straight"), "--overwrite"])
    runs = {"msseg": [child(straighten) for _ in range(args.repeats)]}
    warp = (w / "straight" / "warp_curve2straight.nii.gz", w / "straight" / "straight_ref.nii.gz")
    runs["SimpleITK"] = [child(sitk_warp(w / "scan_384.nii.gz", *warp, w / "s_sitk.nii.gz"))
                         for _ in range(args.repeats)]
    report("straighten", runs)
    apply = msseg_cli(["warp", "-i", str(w / "scan_384.nii.gz"), "-w", str(warp[0]), "-d",
                       str(warp[1]), "-o", str(w / "s_msseg.nii.gz"), "--overwrite"])
    runs = {"msseg": [child(apply) for _ in range(args.repeats)],
            "SimpleITK": [child(sitk_warp(w / "scan_384.nii.gz", *warp, w / "s_sitk.nii.gz"))
                          for _ in range(args.repeats)]}
    report("warp", runs)
    print(f"machine: {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
