"""The wheel users install, built and tried outside the repository (``make test`` runs this).

1. ``python -m build --wheel``; ``check-wheel-contents``; the wheel holds the package and its
   bundled models (ONNX files included), no tests, no recipes; its size is printed.
2. A fresh venv with the core only (``pip install msseg-….whl``, torch pinned by
   ``constraints.txt`` like every pip call here): ``import torch`` must fail there; ``msseg
   segment lesion_ms_axial_t2`` on a real scan and ``msseg evaluate`` on a pair of masks must
   give the development install's outputs (masks voxel for voxel, probabilities and scores to
   1e-6); each command that needs an extra must fail in one line naming it.
3. The same with ``msseg[all]``.

Install times and installed sizes are printed (pip's cache is warm on this machine after
``make``'s own install). Run: .venv/bin/python tests/wheel_check.py [--work DIR] [--skip-all]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "spine"
SCAN = DATA / "ms_patient_unlabelled" / "t2_ms" / "t2.nii.gz"
PAIR = (DATA / "sct_testing_data" / "t2" / "t2_fake_lesion_lesion_seg.nii.gz",
        DATA / "sct_testing_data" / "t2" / "t2_fake_lesion_lesion_seg.nii.gz")
SCT_MODEL = ROOT.parent / "shared" / "models" / "sct_deepseg" / "t2_ctr.h5"


def run(command: list, check: bool = True, env: dict | None = None
        ) -> subprocess.CompletedProcess:
    done = subprocess.run([str(c) for c in command], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})
    if check and done.returncode:
        raise SystemExit(f"failed: {' '.join(map(str, command))}\n{done.stdout[-2000:]}"
                         f"\n{done.stderr[-3000:]}")
    return done


def build(work: Path) -> Path:
    dist = work / "dist"
    start = time.perf_counter()
    run([sys.executable, "-m", "build", "--wheel", "--outdir", dist, ROOT])
    wheel = next(dist.glob("msseg-*.whl"))
    print(f"wheel {wheel.name}: {wheel.stat().st_size / 2**20:.1f} MB, built in "
          f"{time.perf_counter() - start:.0f} s")
    run([Path(sys.executable).parent / "check-wheel-contents", wheel])
    names = zipfile.ZipFile(wheel).namelist()
    assert not [n for n in names if n.startswith(("tests/", "recipes/", "benchmarks/"))], \
        "tests, recipes or benchmarks in the wheel"
    onnx = [n for n in names if n.endswith("model.onnx")]
    assert any("lesion_ms_axial_t2/model.onnx" in n for n in onnx), "bundled ONNX missing"
    print(f"  {len(names)} files, {len(onnx)} bundled ONNX models, "
          f"{sum(n.endswith('.pt') for n in names)} .pt files (for --backend torch / training)")
    return wheel


def venv(work: Path, name: str, requirement: str) -> Path:
    folder = work / name
    shutil.rmtree(folder, ignore_errors=True)
    run([sys.executable, "-m", "venv", folder])
    pip = [folder / "bin" / "pip", "-q", "--disable-pip-version-check"]
    start = time.perf_counter()
    run([*pip, "install", "-c", ROOT / "constraints.txt", requirement])
    seconds = time.perf_counter() - start
    site = next((folder / "lib").glob("python*/site-packages"))
    size = sum(p.stat().st_size for p in site.rglob("*") if p.is_file()) / 2**20
    print(f"{name}: pip install {Path(requirement).name} in {seconds:.0f} s, "
          f"site-packages {size:.0f} MB")
    return folder / "bin"


def outputs(bin_dir: Path, out: Path, env: dict) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    run([bin_dir / "msseg", "segment", "lesion_ms_axial_t2", "-i", SCAN, "-o", out / "seg",
         "--soft"], env=env)
    run([bin_dir / "msseg", "evaluate", "-p", out / "seg" / "t2_label-lesion_seg.nii.gz",
         "-r", PAIR[1], "-o", out / "scores.csv"], env=env, check=False)
    run([bin_dir / "msseg", "evaluate", "-p", PAIR[0], "-r", PAIR[1], "-o",
         out / "pair.csv"], env=env)
    seg = out / "seg"
    run([bin_dir / "msseg", "morphometry", "-s", seg / "t2_label-SC_seg.nii.gz", "-o",
         out / "csa.csv", "--per-slice"], env=env)
    return {"cord": np.asarray(nib.load(seg / "t2_label-SC_seg.nii.gz").dataobj),
            "lesion": np.asarray(nib.load(seg / "t2_label-lesion_seg.nii.gz").dataobj),
            "prob": np.asarray(nib.load(seg / "t2_label-lesion_probseg.nii.gz").dataobj),
            "pair": pd.read_csv(out / "pair.csv"),
            "csa": pd.read_csv(out / "csa.csv").select_dtypes("number")}


def same(a: dict, b: dict, label: str) -> None:
    assert (a["cord"] == b["cord"]).all() and (a["lesion"] == b["lesion"]).all(), label
    assert np.abs(a["prob"] - b["prob"]).max() <= 1e-6, label
    numeric = a["pair"].select_dtypes("number").columns
    assert np.allclose(a["pair"][numeric], b["pair"][numeric], atol=1e-6, equal_nan=True), label
    assert a["csa"].shape == b["csa"].shape and len(a["csa"]), label
    assert np.allclose(a["csa"], b["csa"], atol=1e-6, equal_nan=True), label
    print(f"  {label}: masks voxel for voxel, probabilities, scores and cord morphometry to "
          "1e-6 as the dev install")


def refusals(bin_dir: Path, work: Path, env: dict) -> None:
    """Every command that needs an extra fails in one line that names it, writing nothing."""
    msseg = bin_dir / "msseg"
    csv = work / "core_out" / "pair.csv"
    cases = {
        "torch": [[msseg, "segment", "lesion_ms_axial_t2", "-i", SCAN, "-o", work / "x1",
                   "--backend", "torch"],
                  [msseg, "train", "--dataset", work / "none.json", "--output", work / "x2"],
                  [msseg, "segment", SCT_MODEL.with_name("t2_ax_lesion.h5"), "-i", SCAN, "-o",
                   work / "x3"],
                  [msseg, "models", "import", SCT_MODEL]],
        "stats": [[msseg, "stats", csv, csv, "-o", work / "x4.csv"]],
        "register": [[msseg, "compare", "-b", PAIR[0], "-f", PAIR[1], "--baseline-image",
                      SCAN.parent.parent.parent / "sct_testing_data" / "t2" / "t2.nii.gz",
                      "--followup-image", SCAN.parent.parent.parent / "sct_testing_data" /
                      "t2" / "t2.nii.gz", "-o", work / "x5"]],
        "dask": [[msseg, "segment", "lesion_ms_axial_t2", "-i", SCAN, "-o", work / "x6",
                  "--dask-scheduler", "tcp://127.0.0.1:1"]],
    }
    for extra, commands in cases.items():
        for command in commands:
            done = run(command, check=False, env=env)
            err = done.stderr.strip()
            assert done.returncode == 1, (command, done.returncode, err)
            assert len(err.splitlines()) == 1 and f"pip install 'msseg[{extra}]'" in err, \
                (command, err)
    assert not any((work / f"x{i}").exists() for i in range(1, 7)), "a refused run wrote"
    print(f"  {sum(map(len, cases.values()))} commands needing an extra refused in one line")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path)
    parser.add_argument("--skip-all", action="store_true", help="no msseg[all] venv")
    args = parser.parse_args()
    work = (args.work or Path(tempfile.mkdtemp(prefix="msseg-wheel-"))).absolute()
    work.mkdir(parents=True, exist_ok=True)
    env = {"XDG_DATA_HOME": str(work / "store"), "XDG_CACHE_HOME": str(work / "cache")}
    wheel = build(work)
    dev = outputs(ROOT / ".venv" / "bin", work / "dev_out", env)
    core = venv(work, "core", str(wheel))
    assert run([core / "python", "-c", "import torch"], check=False).returncode != 0, \
        "torch is importable in the core install"
    same(outputs(core, work / "core_out", env), dev, "core (no torch)")
    refusals(core, work, env)
    if not args.skip_all:
        full = venv(work, "all", f"{wheel}[all]")
        same(outputs(full, work / "all_out", env), dev, "msseg[all]")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    print("wheel check passed")


if __name__ == "__main__":
    main()
