"""SCT's released lesion models: SCT's own ``sct_deepseg_lesion`` against ``msseg segment``.

Both sides run the same weights (SCT's ``t2_ax_lesion`` / ``t2s_lesion``, ../shared/models) with
the same centerline file (``-centerline file`` / ``--centerline``: pure SCT code on SCT's
side), each command in a fresh process, timed end to end (interpreter start, imports, model
loading, writing; SCT's fixed 3 s deprecation pause included, as users wait for it), peak RSS
from ``wait4``:

* per scan: the three reference cases of ../shared/peers/sct_deepseg_lesion (``t2_ms``,
  ``t2s_uncropped``, ``errsm_18_gre``), ``--repeats`` times each, medians;
* per cohort: 20 scans (copies of the real T2*w and axial T2w scans of ../shared/data that have
  a centerline file or a manual cord mask): SCT one process per scan, msseg one process per
  scan, and msseg's batch mode (one command, one model load).

Masks are compared voxel for voxel. SCT is the peer installed from ../shared/peers/sct
(``install.sh TARGET``, outside the repository); it always runs on copies, since it writes
next to its input.

Run: .venv/bin/python benchmarks/sct_speed.py --sct ../sct-peer [--repeats 3]
     [--msseg .venv-bench/bin/msseg]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
REF = SHARED / "peers" / "sct_deepseg_lesion"
#: name -> (image, SCT contrast, centerline file), paths under shared/
CASES = {
    "t2_ms": ("data/spine/ms_patient_unlabelled/t2_ms/t2.nii.gz", "t2_ax",
              "peers/sct_deepseg_lesion/t2_ms/centerline_input.nii.gz"),
    "t2s_uncropped": ("data/spine/sct_testing_data/t2s/t2s_uncropped.nii.gz", "t2s",
                      "peers/sct_deepseg_lesion/t2s_uncropped/centerline_input.nii.gz"),
    "errsm_18_gre": ("data/spine/sct_2014_testing/errsm_18/gre/gre.nii.gz", "t2s",
                     "data/spine/sct_2014_testing/errsm_18/gre/segmentation_binary.nii.gz"),
}
COHORT_EXTRA = {
    "sub-unf01_T2star": ("data/spine/ivadomed_unf/sub-unf01/anat/sub-unf01_T2star.nii.gz",
                         "t2s", "data/spine/ivadomed_unf/derivatives/labels/sub-unf01/anat/"
                         "sub-unf01_T2star_seg-manual.nii.gz"),
    "sub-test001_T2star": ("data/spine/ivadomed_testing/sub-test001_T2star_at17d1835.nii.gz",
                           "t2s", "data/spine/ivadomed_testing/"
                           "sub-test001_T2star_seg-manual_at17d1835.nii.gz"),
}
COHORT_SIZE = 20


def timed(command: list[str], env: dict | None = None, cwd: Path | None = None) -> dict:
    """Wall time and peak RSS (MB) of one command in a fresh process."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env={**os.environ, **(env or {})}, cwd=cwd)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    err = process.stderr.read().decode()[-2000:]
    if os.waitstatus_to_exitcode(status):
        raise RuntimeError(f"{' '.join(command)} failed:\n{err}")
    return {"seconds": seconds, "peak_mb": usage.ru_maxrss / 1024}


def sct_run(sct: Path, image: Path, contrast: str, centerline: Path, work: Path) -> dict:
    """``sct_deepseg_lesion -centerline file`` on a copy (SCT writes next to its input)."""
    shutil.rmtree(work, ignore_errors=True)
    (work / "tmp").mkdir(parents=True)
    shutil.copy(image, work / image.name)
    shutil.copy(centerline, work / "centerline.nii.gz")
    run = timed([str(sct / "venv" / "bin" / "sct_deepseg_lesion"), "-i", image.name, "-c",
                 contrast, "-centerline", "file", "-file_centerline", "centerline.nii.gz",
                 "-ofolder", "out", "-v", "0"], {"TMPDIR": str(work / "tmp")}, work)
    stem = image.name[:-7]
    return {**run, "mask": work / "out" / f"{stem}_lesionseg.nii.gz"}


def msseg_run(msseg: str, task: str, images: list[Path], centerlines: list[Path],
              out: Path, env: dict) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    return timed([msseg, "segment", task, "-i", *map(str, images), "-o", str(out),
                  "--centerline", *map(str, centerlines)], env)


def same(a: Path, b: Path) -> int:
    """Voxels that differ between two masks."""
    return int((np.asarray(nib.load(a).dataobj) != np.asarray(nib.load(b).dataobj)).sum())


def median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def cohort(work: Path) -> list[tuple[str, Path, str, Path]]:
    """20 scans: copies of the real scans, named scan01…scan20 (each with its centerline)."""
    sources = list({**CASES, **COHORT_EXTRA}.items())
    folder = work / "cohort"
    folder.mkdir(parents=True, exist_ok=True)
    scans = []
    for i in range(COHORT_SIZE):
        name, (image, contrast, centerline) = sources[i % len(sources)]
        stem = f"scan{i + 1:02d}_{name}"
        dest, line = folder / f"{stem}.nii.gz", folder / f"{stem}_centerline.nii.gz"
        if not dest.exists():
            shutil.copy(SHARED / image, dest)
            shutil.copy(SHARED / centerline, line)
        scans.append((stem, dest, contrast, line))
    return scans


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sct", type=Path, required=True, help="the SCT peer install folder")
    parser.add_argument("--msseg", default=str(ROOT / ".venv" / "bin" / "msseg"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/msseg-bench-sct"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-cohort", action="store_true")
    args = parser.parse_args()
    work = args.work.absolute()
    env = {"XDG_DATA_HOME": str(work / "store"), "XDG_CACHE_HOME": str(work / "cache"),
           "OMP_WAIT_POLICY": "PASSIVE"}
    if not (work / "store" / "msseg" / "models" / "sct_lesion_t2s").is_dir():
        subprocess.run([args.msseg, "models", "import-sct", str(SHARED / "models" /
                        "sct_deepseg")], env={**os.environ, **env}, check=True,
                       capture_output=True)
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start; "
          f"medians of {args.repeats} runs; msseg: {args.msseg}")
    print("| scan | SCT | msseg | ratio | SCT peak MB | msseg peak MB | differing voxels |")
    print("|---|---|---|---|---|---|---|")
    for name, (image, contrast, centerline) in CASES.items():
        sct_runs, ms_runs = [], []
        for _ in range(args.repeats):   # interleaved: a drift of the machine hits both
            sct_runs.append(sct_run(args.sct, SHARED / image, contrast, SHARED / centerline,
                                    work / "sct" / name))
            out = work / "msseg" / name
            ms_runs.append(msseg_run(args.msseg, f"sct_lesion_{contrast}", [SHARED / image],
                                     [SHARED / centerline], out, env))
        mask = work / "msseg" / name / f"{Path(image).name[:-7]}_label-lesion_seg.nii.gz"
        diff = same(sct_runs[-1]["mask"], mask)
        print(f"| {name} | {median(sct_runs, 'seconds'):.2f} s | "
              f"{median(ms_runs, 'seconds'):.2f} s | "
              f"{median(sct_runs, 'seconds') / median(ms_runs, 'seconds'):.1f}× | "
              f"{max(r['peak_mb'] for r in sct_runs):.0f} | "
              f"{max(r['peak_mb'] for r in ms_runs):.0f} | {diff} |", flush=True)
    if args.skip_cohort:
        return
    scans = cohort(work)
    sct_total = ms_total = 0.0
    diffs, sct_peak, ms_peak = 0, 0.0, 0.0
    for stem, image, contrast, line in scans:
        s = sct_run(args.sct, image, contrast, line, work / "sct_cohort" / stem)
        m = msseg_run(args.msseg, f"sct_lesion_{contrast}", [image], [line],
                      work / "msseg_cohort" / stem, env)
        sct_total += s["seconds"]
        ms_total += m["seconds"]
        sct_peak, ms_peak = max(sct_peak, s["peak_mb"]), max(ms_peak, m["peak_mb"])
        diffs += same(s["mask"], work / "msseg_cohort" / stem /
                      f"{stem}_label-lesion_seg.nii.gz")
    batch = []
    for contrast in ("t2_ax", "t2s"):
        part = [s for s in scans if s[2] == contrast]
        batch.append(msseg_run(args.msseg, f"sct_lesion_{contrast}", [s[1] for s in part],
                               [s[3] for s in part], work / "msseg_batch" / contrast, env))
    batch_total = sum(b["seconds"] for b in batch)
    print(f"\ncohort of {len(scans)} scans ({sum(s[2] == 't2s' for s in scans)} T2*w, "
          f"{sum(s[2] == 't2_ax' for s in scans)} axial T2w):")
    print(f"- SCT, a process per scan: {sct_total:.1f} s (peak {sct_peak:.0f} MB)")
    print(f"- msseg, a process per scan: {ms_total:.1f} s (peak {ms_peak:.0f} MB), "
          f"ratio {sct_total / ms_total:.1f}×")
    print(f"- msseg batch (one command per model): {batch_total:.1f} s (peak "
          f"{max(b['peak_mb'] for b in batch):.0f} MB), ratio {sct_total / batch_total:.1f}×")
    print(f"- voxels differing from SCT's masks, all scans: {diffs}")
    print(f"load average at the end: {os.getloadavg()[0]:.2f}; "
          f"this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    sys.exit(main())
