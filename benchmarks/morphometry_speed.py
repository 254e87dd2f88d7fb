"""Cord morphometry: ``msseg morphometry`` against SCT's ``sct_process_segmentation``, the
peer, on the shared cord masks, each command in a fresh process, timed end to end.

Both sides measure every slice with angle correction, so the timings compare the same work.
They are run per mask, and then once on all masks together: ``msseg morphometry -s`` takes
them all in one process, while SCT needs one process per mask. Every run's per-slice values are
checked against the other side's (relative 1e-6) before any time is printed. The script prints
medians of ``--repeats`` runs, the ratio, and peak RSS.

Run: .venv/bin/python benchmarks/morphometry_speed.py --sct ../sct-peer [--repeats 5]
     [--msseg .venv-bench/bin/msseg]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SPINE = ROOT.parent / "shared" / "data" / "spine"
MASKS = {
    "t2_seg-manual (55 slices)": "sct_testing_data/t2/t2_seg-manual.nii.gz",
    "errsm_24 T2w (225 slices, sagittal)":
        "sct_2014_testing/errsm_24/t2/t2_manual_segmentation.nii.gz",
    "t2s_seg (10 slices)": "sct_testing_data/t2s/t2s_seg.nii.gz",
    "sub-unf01 T2w (17 slices)":
        "ivadomed_unf/derivatives/labels/sub-unf01/anat/sub-unf01_T2w_seg-manual.nii.gz",
}


def timed(command: list[str]) -> dict:
    """Wall time and peak RSS (MB) of one command in a fresh process (its messages go to a
    file: SCT's progress bars would fill a pipe nobody reads while it runs)."""
    with tempfile.TemporaryFile() as log:
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log,
                                   env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status):
            log.seek(0)
            raise RuntimeError(f"{command[0]} failed: {log.read().decode()[-2000:]}")
    return {"seconds": seconds, "peak_mb": usage.ru_maxrss / 1024}


def sct(args, masks: list[Path], work: Path) -> tuple[dict, list[pd.DataFrame]]:
    """Every mask through its own sct_process_segmentation (SCT takes one mask per call)."""
    total = {"seconds": 0.0, "peak_mb": 0.0}
    tables = []
    for i, mask in enumerate(masks):
        out = work / f"sct_{i}.csv"
        run = timed([str(args.sct / "venv" / "bin" / "sct_process_segmentation"), "-i",
                     str(mask), "-perslice", "1", "-o", str(out)])
        total["seconds"] += run["seconds"]
        total["peak_mb"] = max(total["peak_mb"], run["peak_mb"])
        table = pd.read_csv(out)
        tables.append(pd.DataFrame({"slice": table["Slice (I->S)"].astype(int),
                                    "area": table["MEAN(area)"]}).dropna())
    return total, tables


def ours(args, masks: list[Path], work: Path) -> tuple[dict, list[pd.DataFrame]]:
    out = work / "msseg.csv"
    out.unlink(missing_ok=True)
    run = timed([args.msseg, "morphometry", "-s", *map(str, masks), "--per-slice",
                 "-o", str(out)])
    table = pd.read_csv(out)
    return run, [table[table["mask"] == str(m)][["slice", "area"]] for m in masks]


def check(a: list[pd.DataFrame], b: list[pd.DataFrame]) -> None:
    for x, y in zip(a, b, strict=True):
        assert list(x.slice) == list(y.slice), "different slices"
        np.testing.assert_allclose(x.area.to_numpy(), y.area.to_numpy(), rtol=1e-6)


def median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sct", type=Path, required=True, help="the SCT peer install folder")
    parser.add_argument("--msseg", default=str(ROOT / ".venv" / "bin" / "msseg"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/msseg-bench-morphometry"))
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    print(f"machine: {os.cpu_count()} CPUs; medians of {args.repeats} runs, alternating",
          flush=True)
    cases = {label: [SPINE / rel] for label, rel in MASKS.items()}
    cases[f"all {len(MASKS)} masks"] = [SPINE / rel for rel in MASKS.values()]
    for label, masks in cases.items():
        runs = {"sct": [], "msseg": []}
        for _ in range(args.repeats):
            theirs, their_tables = sct(args, masks, args.work)
            mine, my_tables = ours(args, masks, args.work)
            check(my_tables, their_tables)
            runs["sct"].append(theirs)
            runs["msseg"].append(mine)
        s, m = median(runs["sct"], "seconds"), median(runs["msseg"], "seconds")
        print(f"{label:38s} SCT {s:6.2f} s (peak {median(runs['sct'], 'peak_mb'):5.0f} MB)  "
              f"msseg {m:5.2f} s (peak {median(runs['msseg'], 'peak_mb'):5.0f} MB)  "
              f"ratio {s / m:4.1f}x", flush=True)


if __name__ == "__main__":
    main()
