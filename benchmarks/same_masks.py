"""Do two msseg commands give the same masks? Every bundled segmentation task on the real scans
of ``../shared/data``, compared voxel for voxel (a refactoring must not change outputs).

Each command (``--msseg``: e.g. this checkout's and a wrapper running an older one from a git
worktree) runs ``msseg segment TASK -i SCANS… -o OUT/<command>/<task>`` once per task in a
fresh process: the spine tasks on every spine image (all of them, masks left out), the brain
task on the brain FLAIR images (``--brain N``: the first N that have one). Prints one line per task
and scan (identical, or how many voxels differ and the Dice), and exits 1 if any differ.

Run: .venv/bin/python benchmarks/same_masks.py --msseg OLD_MSSEG [--msseg .venv/bin/msseg]
     [--out /tmp/msseg-same-masks] [--brain 3] [--task lesion_ms_axial_t2 …]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SPINE_TASKS = ("lesion_ms_axial_t2", "lesion_ms", "lesion_2stage", "sc_2stage")
BRAIN_TASKS = ("brain_lesion_flair",)


def spine_scans(data: Path) -> list[Path]:
    from msseg.bids import is_mask_name
    from msseg.io import strip_nifti_suffix

    skip = {"PAM50", "derivatives", "template", "_history"}   # label maps, broken headers
    found = []
    for path in sorted((data / "spine").rglob("*.nii.gz")):
        stem = strip_nifti_suffix(path.name)
        if skip & set(path.parts) or is_mask_name(stem.rsplit("_at", 1)[0]) \
                or "manual" in stem or "labels" in stem:   # ivadomed names end in _at<hash>
            continue
        found.append(path)
    return found


def brain_scans(data: Path, n: int) -> list[Path]:
    return sorted((data / "brain").rglob("FLAIR_*regtoMNI.nii.gz"))[:n]


def run(command: str, task: str, scans: list[Path], out: Path) -> None:
    shutil.rmtree(out, ignore_errors=True)
    # names repeat across folders (t2.nii.gz): one staged link per scan, named after its path
    staged = out.parent / f"{out.name}-inputs"
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir(parents=True)
    for scan in scans:
        (staged / unique_name(scan)).symlink_to(scan.resolve())
    subprocess.run([command, "segment", task, "-i", str(staged), "-o", str(out)],
                   check=True, stdout=subprocess.DEVNULL,
                   env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})


def unique_name(scan: Path) -> str:
    parts = scan.parts[-3:]
    return "_".join(p.replace(".nii.gz", "") for p in parts).replace("-", "") + ".nii.gz"


def compare(a: Path, b: Path) -> str:
    x = np.asarray(nib.load(a).dataobj) > 0
    y = np.asarray(nib.load(b).dataobj) > 0
    if np.array_equal(x, y):
        return "identical"
    total = int(x.sum() + y.sum())
    dice = 2 * int((x & y).sum()) / total if total else 1.0
    return f"DIFFER: {int((x != y).sum())} voxels, Dice {dice:.4f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--msseg", action="append", required=True,
                        help="an msseg command (two in all; the second defaults to the one "
                        "beside this interpreter)")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=Path("/tmp/msseg-same-masks"))
    parser.add_argument("--brain", type=int, default=3)
    parser.add_argument("--task", action="append", help="only these tasks")
    args = parser.parse_args()
    commands = args.msseg + ([str(Path(sys.executable).with_name("msseg"))]
                             if len(args.msseg) == 1 else [])
    inputs = {task: spine_scans(args.data) for task in SPINE_TASKS}
    inputs.update({task: brain_scans(args.data, args.brain) for task in BRAIN_TASKS})
    different = 0
    for task, scans in inputs.items():
        if args.task and task not in args.task:
            continue
        outs = [args.out / f"command{i}" / task for i in range(2)]
        for command, out in zip(commands, outs, strict=True):
            run(command, task, scans, out)
        masks = sorted(outs[0].glob("*_seg.nii.gz"))
        if len(masks) != len(list(outs[1].glob("*_seg.nii.gz"))):
            print(f"{task}: the commands wrote different sets of masks")
            different += 1
        for mask in masks:
            verdict = compare(mask, outs[1] / mask.name)
            different += verdict != "identical"
            print(f"{task:20s} {mask.name:60s} {verdict}", flush=True)
        print(f"{task}: {len(scans)} scans, {len(masks)} masks compared", flush=True)
    print("all identical" if not different else f"{different} masks differ")
    return 1 if different else 0


if __name__ == "__main__":
    sys.exit(main())
