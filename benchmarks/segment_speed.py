"""`msseg segment` end to end: a clinical chunk against SCT's way, and a whole-spine volume.

1. The real MS chunk ``t2_ms`` (axial T2w, 320×256×19 at 0.69×0.69×7.5 mm): the command
   ``msseg segment lesion_ms_axial_t2 -i t2.nii.gz -o OUT`` in a fresh process (interpreter
   start, imports, model loading, stage-1 centerline, prediction, writing and exit all
   counted), against the SCT-style nnU-Net run of the published 2D model on the same file:
   ``nnUNetPredictor`` (tile step 0.5, Gaussian, no mirroring, as SCT configures it) with a 2D
   plan like the published one — in-plane spacing 0.34 mm, 384² tiles, the 7-stage
   PlainConvUNet, 3 folds — also in a fresh process, imports and model loading counted. The
   published weights cannot be downloaded here, so the peer's folds carry random weights
   (built by nnU-Net's own network factory, tests/nnunet_peer.py): the arithmetic, hence the
   time, is the same.
2. A stitched whole-spine volume, 512×512×600 float32 at 0.5×0.5×1 mm (``t2_ms`` resampled to
   that grid and tiled four times along S–I, every other copy mirrored so that the cord is
   continuous): the same command, time and peak resident memory.
3. A synthetic whole spine of the same size with another texture (:func:`textured_spine`: a
   bright elliptic tube, semi-axes 14 × 10 voxels, along x = 256 + 30 sin(z/120),
   y = 256 + 20 cos(z/90), in Gaussian noise N(100, 10), with a darker ring around it): the time
   must follow the cord, not the input's texture.

Each run is a fresh process; its peak RSS is read from ``wait4``. Prints medians of
``--repeats`` runs (the peer: ``--peer-repeats``) and the ratios.

``--msseg`` (repeatable) picks the msseg commands measured, interleaved: by default the one
beside this interpreter (e.g. that and a wrapper running an older checkout, to compare code in
one run);
``make bench-env`` builds ``.venv-bench``, msseg installed as users install it (without the test
extras: in ``.venv``, nnunetv2's dicom2nifti brings pydicom, which nibabel imports at every
start, 0.1 s).

``--model`` (repeatable) names the bundled model or model folder segmented with; every model
given is timed on both inputs, the peer ratio is against the first (e.g. the bundled model and
the folder of the one it replaced, measured in the same run).

Run: .venv/bin/python benchmarks/segment_speed.py [--repeats 5] [--peer-repeats 1]
     [--msseg .venv-bench/bin/msseg [--msseg OLD_MSSEG]]
     [--model lesion_ms_axial_t2 --model OLD_FOLDER]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import nnunet_peer as peer  # noqa: E402
from msseg import io  # noqa: E402
from msseg.image import Image  # noqa: E402
from msseg.preprocess.resample import resample_to_grid  # noqa: E402

CHUNK = "spine/ms_patient_unlabelled/t2_ms/t2.nii.gz"


def timed(argv: list[str], env: dict | None = None) -> dict:
    """Wall seconds and peak RSS (MB) of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, **(env or {})})
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status):
        raise RuntimeError(f"{argv[:3]} failed: {proc.stderr.read().decode()[-2000:]}")
    return {"seconds": seconds, "peak_mb": usage.ru_maxrss / 1024}


def sct_like_folder(data: Path, work: Path) -> Path:
    """The 2D plan nnU-Net makes for axial scans, edited to the published model's 0.34 mm
    spacing and 384² tiles, with 3 folds of random weights."""
    folder = (work / "results" / "Dataset901_MsSegPeer" /
              "nnUNetTrainer__nnUNetPlansSCT__2d")
    if (folder / "fold_2" / "checkpoint_final.pth").is_file():
        return folder
    name = peer.write_raw_dataset(data, work)
    plans = peer.plan(work, 901, "nnUNetPlans")
    plans["plans_name"] = "nnUNetPlansSCT"
    config = plans["configurations"]["2d"]
    config["spacing"] = [0.34, 0.34]
    config["patch_size"] = [384, 384]
    return peer.make_model_folder(work, name, plans, "2d", folds=3, image_orientation="RPI")


def nnunet_command(work: Path, folder: Path, image: Path, out: Path) -> list[str]:
    staged = out / "input" / "case_0000.nii.gz"
    if not staged.exists():
        staged.parent.mkdir(parents=True, exist_ok=True)
        peer.write_reoriented(image, "LAS", staged)   # SCT reorients to RPI first
    (out / "pred").mkdir(parents=True, exist_ok=True)
    script = f"""
        import torch
        from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
        p = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=False,
                            perform_everything_on_device=False, device=torch.device("cpu"),
                            verbose=False, allow_tqdm=False)
        p.initialize_from_trained_model_folder({str(folder)!r}, use_folds=(0, 1, 2))
        p.predict_from_files_sequential([[{str(staged)!r}]], {str(out / "pred")!r},
                                        save_probabilities=False, overwrite=True)
        """
    return [sys.executable, "-c", textwrap.dedent(script)]


def whole_spine(data: Path, path: Path) -> Path:
    if path.exists():
        return path
    scan = io.load(data / CHUNK)
    part_shape = (512, 512, int(scan.shape[2] * scan.spacing[2]))
    spacing = np.array([0.5, 0.5, 1.0])
    affine = scan.affine @ np.diag([*(spacing / np.asarray(scan.spacing)), 1.0])
    centre = scan.world_coordinates(np.array([(np.asarray(scan.shape) - 1) / 2]))[0]
    affine[:3, 3] = centre - affine[:3, :3] @ ((np.asarray(part_shape) - 1) / 2)
    part = resample_to_grid(scan, part_shape, affine, order=1).data
    copies = [part if i % 2 == 0 else part[:, :, ::-1] for i in range(-(-600 // part.shape[2]))]
    volume = np.concatenate(copies, axis=2)[:, :, :600].astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    return io.save(Image(volume, affine), path)


def textured_spine(path: Path, seed: int = 0) -> Path:
    """The synthetic whole spine of item 3 (float32, RAS, 0.5 × 0.5 × 1 mm)."""
    if path.exists():
        return path
    rng = np.random.default_rng(seed)
    shape = (512, 512, 600)
    volume = rng.normal(100, 10, shape).astype(np.float32)
    x, y = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    for z in range(shape[2]):
        cx, cy = 256 + 30 * np.sin(z / 120), 256 + 20 * np.cos(z / 90)
        r = ((x - cx) / 14) ** 2 + ((y - cy) / 10) ** 2
        ring = (r > 1) & (r <= 2.2)
        volume[:, :, z][ring] -= 40       # the darker ring (CSF-like contrast around the cord)
        volume[:, :, z][r <= 1] += 100    # the bright tube
    path.parent.mkdir(parents=True, exist_ok=True)
    return io.save(Image(volume, np.diag([0.5, 0.5, 1.0, 1.0])), path)


def median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def report(label: str, runs: list[dict]) -> None:
    each = ", ".join(f"{r['seconds']:.2f}" for r in runs)
    print(f"{label:44s} {median(runs, 'seconds'):7.2f} s  (runs {each})  "
          f"peak {median(runs, 'peak_mb'):6.0f} MB", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--work", type=Path, default=Path("/tmp/msseg-bench-nnunet"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--peer-repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="msseg --threads (0: cores)")
    parser.add_argument("--skip", default="", help="comma list of: peer, whole, textured")
    parser.add_argument("--model", action="append", help="model name or folder (repeatable; "
                        "default lesion_ms_axial_t2)")
    parser.add_argument("--msseg", action="append",
                        help="the msseg command to measure (repeatable: each is timed, "
                        "interleaved; default the one beside this interpreter)")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    out = args.work / "segment_speed"
    image = args.data / CHUNK
    commands = args.msseg or [str(Path(sys.executable).with_name("msseg"))]
    print(f"machine: {os.cpu_count()} CPUs; medians of {args.repeats} runs (peer "
          f"{args.peer_repeats}); msseg: {', '.join(commands)}", flush=True)

    models = args.model or ["lesion_ms_axial_t2"]
    runners = [(command, model) for command in commands for model in models]

    def msseg(command: str, model: str, path: Path) -> dict:
        shutil.rmtree(out / "msseg", ignore_errors=True)
        return timed([command, "segment", model, "-i", str(path), "-o",
                      str(out / "msseg"), "--threads", str(args.threads)])

    def interleaved(path: Path, repeats: int) -> dict[str, list[dict]]:
        """Runs of every command and model, alternating, so that a drift of the machine hits
        all alike; keyed by their label."""
        runs = {label(*r): [] for r in runners}
        for _ in range(repeats):
            for runner in runners:
                runs[label(*runner)].append(msseg(*runner, path))
        return runs

    def label(command: str, model: str) -> str:
        name = Path(model).name
        return name if len(commands) == 1 else f"{name} [{command}]"

    chunk = interleaved(image, args.repeats)
    for name, runs in chunk.items():
        report(f"msseg segment {name}, t2_ms", runs)
    ours = chunk[label(*runners[0])]
    if "peer" not in skip:
        folder = sct_like_folder(args.data, args.work)
        env = {"nnUNet_raw": str(args.work / "raw"), "nnUNet_preprocessed":
               str(args.work / "pre"), "nnUNet_results": str(args.work / "results")}
        theirs = [timed(nnunet_command(args.work, folder, image, out / "nnunet"), env)
                  for _ in range(args.peer_repeats)]
        report("SCT-style nnU-Net 2D (0.34 mm, 384², 3 folds)", theirs)
        print(f"ratio nnU-Net / msseg: {median(theirs, 'seconds') / median(ours, 'seconds'):.1f}x")
    if "whole" not in skip:
        volume = whole_spine(args.data, args.work / "whole_spine" / "whole_T2w.nii.gz")
        for name, runs in interleaved(volume, max(1, args.repeats // 2)).items():
            report(f"msseg segment {name}, whole spine 512×512×600", runs)
    if "textured" not in skip:
        volume = textured_spine(args.work / "whole_spine" / "textured_T2w.nii.gz")
        for name, runs in interleaved(volume, max(1, args.repeats // 2)).items():
            report(f"msseg segment {name}, textured spine 512×512×600", runs)


if __name__ == "__main__":
    main()
