"""nnU-Net v2 itself, as the peer of msseg's nnU-Net adapter (tests and benchmarks).

Builds a model folder the way nnU-Net would: an nnU-Net raw dataset from real scans of
../shared/data, nnU-Net's own fingerprint extraction and experiment planner, networks built by
nnU-Net's own ``get_network_from_plans`` with random weights (seeded, one per fold), saved as
nnU-Net checkpoints (same keys as ``nnUNetTrainer.save_checkpoint``, NumPy scalars in the
training log); and predicts with ``nnUNetPredictor``. Every nnU-Net call runs in a subprocess
with nnU-Net's path variables set, so its imports and prints stay out of the calling process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

from msseg import io
from msseg.preprocess.orient import reorient

#: Real axial scans with cord masks (0.5×0.5×7.5 mm T2*w / GRE) used to plan the models.
PLANNING_SCANS = (
    ("spine/sct_2014_testing/errsm_18/gre/gre.nii.gz",
     "spine/sct_2014_testing/errsm_18/gre/segmentation_binary.nii.gz"),
    ("spine/ivadomed_testing/sub-test001_T2star_at17d1835.nii.gz",
     "spine/ivadomed_testing/sub-test001_T2star_seg-manual_at17d1835.nii.gz"),
    ("spine/sct_2014_testing/errsm_24/mt/mt1.nii.gz",
     "spine/sct_2014_testing/errsm_24/mt/segmentation_binary.nii.gz"),
)
LABELS = {"background": 0, "sc": [1, 2], "lesion": 2}


def run_nnunet(script: str, workdir: Path, timeout: int = 900) -> str:
    """Run a Python snippet with nnU-Net's path variables pointing into ``workdir``."""
    env = dict(os.environ, nnUNet_raw=str(workdir / "raw"),
               nnUNet_preprocessed=str(workdir / "preprocessed"),
               nnUNet_results=str(workdir / "results"),
               OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], env=env,
                          capture_output=True, text=True, timeout=timeout)
    if done.returncode:
        raise RuntimeError(f"nnU-Net step failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done.stdout


def write_raw_dataset(data: Path, workdir: Path, dataset_id: int = 901) -> str:
    """An nnU-Net raw dataset: the planning scans, labels cord = 1 and a small painted
    'lesion' = 2 inside each cord (so both labels exist)."""
    name = f"Dataset{dataset_id}_MsSegPeer"
    root = workdir / "raw" / name
    (root / "imagesTr").mkdir(parents=True, exist_ok=True)
    (root / "labelsTr").mkdir(parents=True, exist_ok=True)
    for i, (image_path, cord_path) in enumerate(PLANNING_SCANS):
        image = io.load(data / image_path)
        cord = io.load(data / cord_path).data > 0.5
        label = cord.astype(np.uint8)
        inside = np.argwhere(cord)
        centre = inside[len(inside) // 2]
        box = tuple(slice(max(c - 2, 0), c + 2) for c in centre)
        label[box] = np.where(cord[box], 2, label[box])
        io.save_like(image.data.astype(np.float32), image,
                     root / "imagesTr" / f"case{i:02d}_0000.nii.gz", np.float32)
        io.save_like(label, image, root / "labelsTr" / f"case{i:02d}.nii.gz")
    dataset = {"channel_names": {"0": "T2star"}, "labels": LABELS, "regions_class_order": [1, 2],
               "numTraining": len(PLANNING_SCANS), "file_ending": ".nii.gz"}
    (root / "dataset.json").write_text(json.dumps(dataset, indent=1))
    return name


def plan(workdir: Path, dataset_id: int, plans_name: str, gpu_gb: float | None = None) -> dict:
    """nnU-Net's fingerprint extraction (once) and its default experiment planner."""
    run_nnunet(f"""
        from nnunetv2.experiment_planning.plan_and_preprocess_api import (
            extract_fingerprints, plan_experiments)
        extract_fingerprints([{dataset_id}], num_processes=1, clean=False)
        plan_experiments([{dataset_id}], gpu_memory_target_in_gb={gpu_gb!r},
                         overwrite_plans_name={plans_name!r})
        """, workdir)
    found = list((workdir / "preprocessed").glob(f"Dataset{dataset_id}_*/{plans_name}.json"))
    return json.loads(found[0].read_text())


def make_model_folder(workdir: Path, dataset_name: str, plans: dict, configuration: str,
                      folds: int = 2, seed: int = 0, head_scale: float = 8.0,
                      image_orientation: str | None = None) -> Path:
    """A results folder ``nnUNetTrainer__<plans>__<configuration>`` with random weights
    built by nnU-Net's own network factory; the last layer is scaled by ``head_scale`` so
    that random logits are spread out (few voxels sit on the 0.5 threshold)."""
    raw = json.loads((workdir / "raw" / dataset_name / "dataset.json").read_text())
    if image_orientation:
        raw["image_orientation"] = image_orientation
    folder = workdir / "results" / dataset_name / (
        f"nnUNetTrainer__{plans['plans_name']}__{configuration}")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "plans.json").write_text(json.dumps(plans, indent=1))
    (folder / "dataset.json").write_text(json.dumps(raw, indent=1))
    run_nnunet(f"""
        import json, numpy as np, torch
        from pathlib import Path
        from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
        from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
        folder = Path({str(folder)!r})
        plans = json.loads((folder / "plans.json").read_text())
        dataset = json.loads((folder / "dataset.json").read_text())
        arch = plans["configurations"][{configuration!r}]["architecture"]
        heads = PlansManager(plans).get_label_manager(dataset).num_segmentation_heads
        for fold in range({folds}):
            torch.manual_seed({seed} + fold)
            net = get_network_from_plans(arch["network_class_name"], arch["arch_kwargs"],
                                         arch["_kw_requires_import"], 1, heads,
                                         allow_init=True, deep_supervision=True)
            with torch.no_grad():
                for stage in net.decoder.seg_layers:
                    stage.weight.mul_({head_scale})
            logging = {{"mean_fg_dice": [np.float64(0.5)], "ema_fg_dice": [np.float64(0.5)],
                        "dice_per_class_or_region": [[np.float64(0.4), np.float64(0.6)]],
                        "train_losses": [np.float64(-0.3)], "val_losses": [np.float64(-0.2)],
                        "lrs": [0.01], "epoch_start_timestamps": [0.0],
                        "epoch_end_timestamps": [1.0]}}
            checkpoint = {{
                "network_weights": net.state_dict(), "optimizer_state": {{}},
                "grad_scaler_state": None, "logging": logging,
                "_best_ema": np.float64(0.5), "current_epoch": 1000,
                "init_args": {{"plans": plans, "configuration": {configuration!r},
                               "fold": fold, "dataset_json": dataset,
                               "device": torch.device("cpu")}},
                "trainer_name": "nnUNetTrainer",
                "inference_allowed_mirroring_axes": (0, 1) if {configuration!r} == "2d"
                                                    else (0, 1, 2)}}
            (folder / f"fold_{{fold}}").mkdir(exist_ok=True)
            torch.save(checkpoint, folder / f"fold_{{fold}}" / "checkpoint_final.pth")
        """, workdir)
    return folder


def predict(workdir: Path, folder: Path, image: Path, out: Path, folds=(0, 1),
            step: float = 0.5) -> float:
    """nnU-Net's own predictor on one image (Gaussian, no mirroring, CPU): writes
    ``out/case.nii.gz`` (labels) and ``out/case.npz`` (probabilities, nnU-Net's (z, y, x)
    array order); returns its seconds."""
    out.mkdir(parents=True, exist_ok=True)
    staged = out / "input" / "case_0000.nii.gz"  # nnU-Net names inputs <case>_<channel>
    staged.parent.mkdir(exist_ok=True)
    staged.unlink(missing_ok=True)
    staged.symlink_to(Path(image).resolve())
    image = staged
    stdout = run_nnunet(f"""
        import time, torch
        from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
        predictor = nnUNetPredictor(tile_step_size={step}, use_gaussian=True,
                                    use_mirroring=False, perform_everything_on_device=False,
                                    device=torch.device("cpu"), verbose=False,
                                    allow_tqdm=False)
        predictor.initialize_from_trained_model_folder({str(folder)!r},
                                                       use_folds={tuple(folds)!r})
        start = time.perf_counter()
        predictor.predict_from_files_sequential([[{str(image)!r}]], {str(out)!r},
                                                save_probabilities=True, overwrite=True)
        print("SECONDS", time.perf_counter() - start)
        """, workdir)
    return float(stdout.rsplit("SECONDS", 1)[1].split()[0])


def write_reoriented(source: Path, code: str, path: Path) -> Path:
    """``source`` reoriented to a nibabel axis code, written with a fresh header (the way SCT
    hands an image to nnU-Net after ``image_orientation``)."""
    io.save(reorient(io.load(source), code), path, np.float32)
    return path
