"""Cord and lesion morphometry: ``msseg morphometry`` against SCT's ``sct_process_segmentation``
and ``sct_analyze_lesion``, the peers, each command in a fresh process, timed end to end.

Cord masks: every cord mask of ``../shared/data/spine`` (three sites of sct_testing_data and
ivadomed, the 2014 SCT testing subjects, the PAM50 template's whole-spine cord), and
``t2_seg-manual`` stretched ten times along S–I (550 slices: a whole-spine length). Both sides
measure every slice with angle correction. Each mask runs alone (one process each), then msseg
takes them all in one call while SCT needs one process per mask. Before any time is printed,
every per-slice column of every run is compared with SCT's; the script prints, per column, the
largest absolute and relative difference over all slices of all masks.

Lesions: the dummy lesions of SCT's own sct_analyze_lesion tests on t2.nii.gz's grid (and SCT's
fake lesion), ``sct_analyze_lesion -m LESION -s CORD`` against ``msseg morphometry -s CORD
--lesion LESION`` (which also measures the cord); the lesion measures are compared likewise.

Medians of ``--repeats`` runs, alternating the tools; peak RSS from ``wait4``.

Run: .venv/bin/python benchmarks/morphometry_speed.py --sct ../sct-peer [--repeats 5]
     [--msseg .venv/bin/msseg] [--skip cords,lesions]
"""

from __future__ import annotations

import argparse
import os
import pickle
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SPINE = ROOT.parent / "shared" / "data" / "spine"
CORD_PATTERNS = ("sct_testing_data/*/*_seg-manual.nii.gz", "sct_testing_data/t2s/t2s_seg.nii.gz",
                 "ivadomed_unf/derivatives/labels/*/anat/*_seg-manual.nii.gz",
                 "ivadomed_testing/*seg-manual*.nii.gz",
                 "sct_2014_testing/*/t2/t2_manual_segmentation.nii.gz",
                 "sct_2014_testing/*/*/segmentation_binary.nii.gz", "PAM50/PAM50_cord.nii.gz")
MEASURES = ("area", "angle_AP", "angle_RL", "diameter_AP", "diameter_AP_ellipse", "diameter_RL",
            "length_anterior", "length_posterior", "eccentricity", "orientation", "solidity",
            "length")
LESIONS = {   # SCT's dummy lesions: first voxel and size on t2.nii.gz's grid
    "straight": [((29, 45, 25), (3, 10, 2))], "small_3633": [((29, 27, 25), (1, 4, 1))],
    "curved": [((31, 0, 25), (4, 15, 3))],
    "two_si": [((31, 0, 25), (4, 15, 3)), ((29, 45, 25), (3, 10, 2))],
    "two_rl": [((29, 50, 29), (2, 5, 2)), ((29, 45, 23), (3, 10, 2))],
    "partly_outside": [((29, 40, 19), (3, 3, 5))]}
SCT_LESION_COLUMNS = {
    "volume [mm3]": "volume_in_cord_mm3", "length [mm]": "length_mm", "width [mm]": "width_mm",
    "max_equivalent_diameter [mm]": "max_equivalent_diameter_mm",
    "max_axial_damage_ratio []": "max_axial_damage_ratio",
    "length_interpolated_midsagittal_slice [mm]": "midsagittal_length_mm",
    "width_interpolated_midsagittal_slice [mm]": "midsagittal_width_mm",
    "interpolated_dorsal_bridge_width [mm]": "dorsal_bridge_mm",
    "interpolated_ventral_bridge_width [mm]": "ventral_bridge_mm",
    "interpolated_total_bridge_width [mm]": "total_bridge_mm"}


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


def cord_masks(work: Path) -> dict[str, Path]:
    found = {}
    for pattern in CORD_PATTERNS:
        for path in sorted(SPINE.glob(pattern)):
            found[str(path.relative_to(SPINE))] = path
    source = nib.load(SPINE / "sct_testing_data/t2/t2_seg-manual.nii.gz")   # PSR: S is axis 1
    stretched = np.repeat(np.asarray(source.dataobj), 10, axis=1)
    path = work / "t2_seg-manual_x10.nii.gz"
    nib.save(nib.Nifti1Image(stretched, source.affine, source.header), path)
    found["t2_seg-manual stretched x10 (550 slices)"] = path
    return found


def sct_cords(args, masks: list[Path], work: Path) -> tuple[dict, list[pd.DataFrame]]:
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
        columns = {m: table[f"SUM({m})" if m == "length" else f"MEAN({m})"] for m in MEASURES}
        tables.append(pd.DataFrame({"slice": table["Slice (I->S)"].astype(int), **columns})
                      .dropna(subset=["area"]))
    return total, tables


def msseg_cords(args, masks: list[Path], work: Path) -> tuple[dict, list[pd.DataFrame]]:
    out = work / "msseg.csv"
    out.unlink(missing_ok=True)
    run = timed([args.msseg, "morphometry", "-s", *map(str, masks), "--per-slice",
                 "-o", str(out)])
    table = pd.read_csv(out)
    return run, [table[table["mask"] == str(m)][["slice", *MEASURES]] for m in masks]


def differences(ours: list[pd.DataFrame], theirs: list[pd.DataFrame], columns) -> pd.DataFrame:
    """Per column: the largest absolute and relative difference over every row."""
    rows = []
    for column in columns:
        a = np.concatenate([t[column].to_numpy(float) for t in ours])
        b = np.concatenate([t[column].to_numpy(float) for t in theirs])
        both = np.isfinite(a) & np.isfinite(b)
        assert (np.isfinite(a) == np.isfinite(b)).all(), f"{column}: NaN in one tool only"
        diff = np.abs(a[both] - b[both])
        scale = np.maximum(np.abs(b[both]), 1e-12)
        rows.append({"column": column, "values": int(both.sum()),
                     "max_abs_diff": float(diff.max(initial=0)),
                     "max_rel_diff": float((diff / scale).max(initial=0))})
    return pd.DataFrame(rows)


def cords(args) -> None:
    work = args.work / "cords"
    work.mkdir(parents=True)
    masks = cord_masks(work)
    cases = {label: [path] for label, path in masks.items()}
    cases[f"all {len(masks)} masks (msseg: one process; SCT: one each)"] = list(masks.values())
    all_ours, all_theirs = [], []
    for label, paths in cases.items():
        runs = {"sct": [], "msseg": []}
        for _ in range(args.repeats):
            theirs, their_tables = sct_cords(args, paths, work)
            mine, my_tables = msseg_cords(args, paths, work)
            for x, y in zip(my_tables, their_tables, strict=True):
                assert list(x.slice) == list(y.slice), f"{label}: different slices"
            runs["sct"].append(theirs)
            runs["msseg"].append(mine)
        if len(paths) == 1:
            all_ours += my_tables
            all_theirs += their_tables
        report(label, runs)
    print(differences(all_ours, all_theirs, MEASURES).to_string(index=False), flush=True)


def lesion_cases(work: Path) -> dict[str, tuple[Path, Path]]:
    t2 = SPINE / "sct_testing_data" / "t2"
    image = nib.load(t2 / "t2.nii.gz")
    cases = {}
    for name, boxes in LESIONS.items():
        data = np.zeros(image.shape, np.uint8)
        for (x, y, z), (w, h, d) in boxes:
            data[x:x + w, y:y + h, z:z + d] = 1
        path = work / f"{name}.nii.gz"
        nib.save(nib.Nifti1Image(data, image.affine, image.header), path)
        cases[name] = (path, t2 / "t2_seg-manual.nii.gz")
    cases["t2_fake_lesion"] = (t2 / "t2_fake_lesion_lesion_seg.nii.gz",
                               t2 / "t2_fake_lesion_sc_seg.nii.gz")
    return cases


def lesions(args) -> None:
    work = args.work / "lesions"
    work.mkdir(parents=True)
    all_ours, all_theirs = [], []
    for name, (lesion, cord) in lesion_cases(work).items():
        runs = {"sct": [], "msseg": []}
        for _ in range(args.repeats):
            folder = work / f"sct_{name}"
            shutil.rmtree(folder, ignore_errors=True)
            runs["sct"].append(timed([str(args.sct / "venv" / "bin" / "sct_analyze_lesion"),
                                      "-m", str(lesion), "-s", str(cord), "-ofolder",
                                      str(folder)]))
            out = work / f"msseg_{name}.csv"
            out.unlink(missing_ok=True)
            Path(str(out).removesuffix(".csv") + "_lesions.csv").unlink(missing_ok=True)
            runs["msseg"].append(timed([args.msseg, "morphometry", "-s", str(cord), "--lesion",
                                        str(lesion), "-o", str(out)]))
        theirs = pickle.loads(next(folder.glob("*_analysis.pkl")).read_bytes())["measures"]
        theirs = theirs.rename(columns=SCT_LESION_COLUMNS)
        ours = pd.read_csv(str(out).removesuffix(".csv") + "_lesions.csv")
        key = "volume_in_cord_mm3"
        all_theirs.append(theirs.sort_values(key, kind="stable"))
        all_ours.append(ours.sort_values(key, kind="stable"))
        report(f"lesions: {name}", runs)
    print(differences(all_ours, all_theirs, SCT_LESION_COLUMNS.values()).to_string(index=False),
          flush=True)


def report(label: str, runs: dict) -> None:
    s = statistics.median(r["seconds"] for r in runs["sct"])
    m = statistics.median(r["seconds"] for r in runs["msseg"])
    peak_s = statistics.median(r["peak_mb"] for r in runs["sct"])
    peak_m = statistics.median(r["peak_mb"] for r in runs["msseg"])
    print(f"{label:62s} SCT {s:6.2f} s ({peak_s:4.0f} MB)  msseg {m:5.2f} s ({peak_m:4.0f} MB)"
          f"  ratio {s / m:4.1f}x", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sct", type=Path, required=True, help="the SCT peer install folder")
    parser.add_argument("--msseg", default=str(ROOT / ".venv" / "bin" / "msseg"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/msseg-bench-morphometry"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip", default="", help="comma-separated: cords, lesions")
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    print(f"machine: {os.cpu_count()} CPUs; medians of {args.repeats} runs, alternating",
          flush=True)
    skip = set(args.skip.split(","))
    if "cords" not in skip:
        cords(args)
    if "lesions" not in skip:
        lesions(args)


if __name__ == "__main__":
    main()
