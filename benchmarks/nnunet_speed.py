"""nnU-Net model folders: nnU-Net's own predictor against `msseg segment`, in one run.

The model folders are the parity test's (tests/nnunet_peer.py): planned by nnU-Net's own
fingerprinting + default planner on three real axial scans of ../shared/data — ``2d``:
PlainConvUNet, 7 stages, 32…512 features, 320² patches at 0.5 mm (the axial-T2w paper's kind of
plan); ``3d``: a small 3d_fullres plan (6×128×128 patches) — with random weights, 2 folds, and
SCT's ``image_orientation: RPI`` in dataset.json. Each is run on

* the real MS chunk ``t2_ms`` (axial, 320×256×19 at 0.69×0.69×7.5 mm), and
* a larger field of view: the sagittal whole-cervical T2w ``errsm_24/t2`` (384×225×52 at 1 mm),
  which the RPI orientation turns into 225 axial slices of 52×384 mm — the way SCT runs its
  axial models on sagittal scans.

Every run is a fresh subprocess (model loading excluded from the time: the clock runs around
the per-image call, file reading and writing included), so each side's peak resident memory
is its own: nnU-Net's ``nnUNetPredictor.predict_from_files_sequential`` (tile step 0.5,
Gaussian, no mirroring, as SCT configures it; its default threads: min(8, cores) for torch) and
msseg's segmenter (torch's default threads: the cores) (default: crop to the
stage-1 centerline tube on nnU-Net's window grid; ``onnx``: the same with ``--backend onnx``;
``exact``: ``--nnunet-exact``). Prints the
median seconds over ``--repeats`` runs, the ratios and the peak RSS.

Run: .venv/bin/python benchmarks/nnunet_speed.py [--repeats 3] [--folds 0,1]
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import nnunet_peer as peer  # noqa: E402

SCANS = {"t2_ms chunk": "spine/ms_patient_unlabelled/t2_ms/t2.nii.gz",
         "sagittal cervical": "spine/sct_2014_testing/errsm_24/t2/t2.nii.gz"}


def build(data: Path, work: Path) -> dict[str, Path]:
    """The 2D and small 3D model folders (reused when already built in ``work``)."""
    folders = {"2d": "nnUNetTrainer__nnUNetPlans__2d",
               "3d": "nnUNetTrainer__nnUNetPlansSmall__3d_fullres"}
    found = {k: work / "results" / "Dataset901_MsSegPeer" / v for k, v in folders.items()}
    if all((f / "fold_1" / "checkpoint_final.pth").is_file() for f in found.values()):
        return found
    name = peer.write_raw_dataset(data, work)
    plans = peer.plan(work, 901, "nnUNetPlans")
    small = peer.plan(work, 901, "nnUNetPlansSmall", gpu_gb=0.5)
    return {"2d": peer.make_model_folder(work, name, plans, "2d", image_orientation="RPI"),
            "3d": peer.make_model_folder(work, name, small, "3d_fullres",
                                         image_orientation="RPI")}


def child(script: str, env: dict | None = None) -> dict:
    """Run a snippet in a fresh interpreter; it prints one JSON line (seconds, peak RSS)."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=3600)
    if done.returncode:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


PEAK = "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024"


def run_nnunet(work: Path, folder: Path, image: Path, folds: tuple, out: Path) -> dict:
    """nnU-Net's predictor on the RPI copy of the image (SCT reorients before predicting)."""
    staged = out / "input" / "case_0000.nii.gz"
    staged.parent.mkdir(parents=True, exist_ok=True)
    if not staged.exists():
        peer.write_reoriented(image, "LAS", staged)
    env = {"nnUNet_raw": str(work / "raw"), "nnUNet_preprocessed": str(work / "pre"),
           "nnUNet_results": str(work / "results")}
    return child(f"""
        import json, resource, time, torch
        from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
        p = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=False,
                            perform_everything_on_device=False, device=torch.device("cpu"),
                            verbose=False, allow_tqdm=False)
        p.initialize_from_trained_model_folder({str(folder)!r}, use_folds={folds!r})
        t = time.perf_counter()
        p.predict_from_files_sequential([[{str(staged)!r}]], {str(out)!r},
                                        save_probabilities=False, overwrite=True)
        print(json.dumps({{"seconds": time.perf_counter() - t, "peak_mb": {PEAK}}}))
        """, env)


def run_msseg(folder: Path, image: Path, folds: tuple, out: Path, exact: bool,
              backend: str = "torch") -> dict:
    return child(f"""
        import json, resource, time
        from pathlib import Path
        from msseg import io
        from msseg.inference.segment import SegmentOptions, make_segmenter
        from msseg.models.registry import open_model
        options = SegmentOptions(crop={not exact}, postprocessing=False, backend={backend!r},
                                 folds={",".join(map(str, folds))!r})
        segmenter = make_segmenter(open_model({str(folder)!r}), options)
        out = Path({str(out)!r}); out.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        image = io.load({str(image)!r})
        result = segmenter.segment(image)
        for name, mask in result.masks.items():
            io.save_like(mask.data, image, out / f"{{name}}.nii.gz")
        print(json.dumps({{"seconds": time.perf_counter() - t, "peak_mb": {PEAK},
                           "windows_cropped": result.crop_box is not None}}))
        """)


def median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--work", type=Path, default=Path("/tmp/msseg-bench-nnunet"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--folds", default="0,1")
    parser.add_argument("--models", default="2d,3d")
    parser.add_argument("--scans", default=",".join(SCANS))
    parser.add_argument("--exact", action="store_true", help="also time --nnunet-exact")
    parser.add_argument("--onnx", action="store_true", help="also time --backend onnx")
    args = parser.parse_args()
    folds = tuple(int(f) for f in args.folds.split(","))
    folders = build(args.data, args.work)
    print(f"folds {folds}; medians of {args.repeats} runs; machine: {os.cpu_count()} CPUs")
    for key in args.models.split(","):
        for label in args.scans.split(","):
            image = args.data / SCANS[label]
            out = args.work / "out" / key / label.replace(" ", "_")
            sides = {"nnU-Net": [run_nnunet(args.work, folders[key], image, folds,
                                            out / "nnunet") for _ in range(args.repeats)],
                     "msseg": [run_msseg(folders[key], image, folds, out / "msseg", False)
                               for _ in range(args.repeats)]}
            if args.onnx:
                sides["msseg onnx"] = [run_msseg(folders[key], image, folds, out / "onnx",
                                                 False, "onnx") for _ in range(args.repeats)]
            if args.exact:
                sides["msseg exact"] = [run_msseg(folders[key], image, folds, out / "exact",
                                                  True) for _ in range(args.repeats)]
            base = median(sides["nnU-Net"], "seconds")
            for side, runs in sides.items():
                seconds = median(runs, "seconds")
                each = ", ".join(f"{r['seconds']:.1f}" for r in runs)
                print(f"{key} {label:18s} {side:12s} {seconds:7.1f} s  (runs {each})  "
                      f"ratio {base / seconds:5.2f}x  peak {median(runs, 'peak_mb'):6.0f} MB")


if __name__ == "__main__":
    main()
