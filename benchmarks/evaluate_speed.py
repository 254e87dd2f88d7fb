"""Speed of `msseg evaluate`'s metrics against the same metrics computed through MONAI.

30 pairs built from the real consensus lesion masks of 3D-MR-MS (182x218x182, 1 mm): the
reference is a patient's mask, the prediction the same mask perturbed (a lesion dropped, 30% of
lesions dilated, 30% eroded, two false positives). Both sides get the arrays in memory (file
reading is not timed) and compute Dice, NSD at 1 mm, HD95, ASSD, RVE and the lesion-wise
counts (TP/FP/FN with the published rule). MONAI has no lesion-wise metrics, so the peer does
those with scipy.ndimage.label and a loop over lesions, as MetricsReloaded's code does.

Then the command end to end: the 30 pairs written as gzipped NIfTI (prediction and reference
folders), ``msseg evaluate -p PRED -r REF -o metrics.csv`` in a fresh process (interpreter start,
imports, file reading, all metrics, writing, exit), wall time and peak RSS, median of
``--repeats`` runs.

MetricsReloaded itself, the peer the speed issue names, is not on PyPI (it installs from GitHub,
which this machine cannot reach), so it cannot run here; its values are matched by the tests
(the metric definitions, empty rules and its own test-suite cases).

Run: .venv/bin/python benchmarks/evaluate_speed.py [--data ../shared/data] [--repeats 5]
Prints per-case times and the ratio peer / msseg measured in this run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from monai.metrics import (
    compute_average_surface_distance,
    compute_dice,
    compute_hausdorff_distance,
    compute_surface_dice,
)
from scipy import ndimage

from msseg import io
from msseg.evaluation.engine import EvalOptions, evaluate_masks
from msseg.synth import perturb_mask


def build_pairs(data: Path, n: int = 30) -> list[tuple[np.ndarray, np.ndarray]]:
    paths = sorted((data / "brain/3d-mr-ms/MNI").glob("patient*/GOLD_STANDARD*.nii.gz"))
    refs = [io.load(p).data > 0 for p in paths]
    return [(perturb_mask(refs[i % len(refs)], seed=i, add=2), refs[i % len(refs)])
            for i in range(n)]


def peer(pred: np.ndarray, ref: np.ndarray) -> dict:
    p = torch.from_numpy(np.stack([~pred, pred])[None].astype(np.float32))
    r = torch.from_numpy(np.stack([~ref, ref])[None].astype(np.float32))
    out = {
        "dice": float(compute_dice(p, r, include_background=False)),
        "nsd": float(compute_surface_dice(p, r, [1.0], spacing=(1, 1, 1))),
        "hd95_mm": float(compute_hausdorff_distance(p, r, percentile=95, spacing=(1, 1, 1))),
        "assd_mm": float(compute_average_surface_distance(p, r, symmetric=True)),
        "rve": (pred.sum() - ref.sum()) / ref.sum(),
    }
    ref_lab, n_ref = ndimage.label(ref)
    pred_lab, n_pred = ndimage.label(pred)
    tp = sum(pred[ref_lab == i].sum() / (ref_lab == i).sum() >= 0.1 for i in range(1, n_ref + 1))
    fp = sum(not ref[pred_lab == i].any() for i in range(1, n_pred + 1))
    out.update(lesion_tp=tp, lesion_fp=fp, lesion_fn=n_ref - tp)
    return out


def timed(fn, pairs):
    results, start = [], time.perf_counter()
    for pred, ref in pairs:
        results.append(fn(pred, ref))
    return results, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).parents[2] / "shared/data")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    pairs = build_pairs(args.data)
    options = EvalOptions()
    ours, t_ours = timed(lambda p, r: evaluate_masks(p, r, (1, 1, 1), options)[0], pairs)
    theirs, t_peer = timed(peer, pairs)
    worst = max(abs(a[k] - b[k]) for a, b in zip(ours, theirs, strict=True) for k in b)
    n = len(pairs)
    print(f"{n} pairs of real lesion masks, 182x218x182 voxels, all metrics per case")
    print(f"msseg          : {1000 * t_ours / n:8.1f} ms/case")
    print(f"MONAI + scipy  : {1000 * t_peer / n:8.1f} ms/case")
    print(f"ratio peer/msseg: {t_peer / t_ours:.1f}x   (largest value difference: {worst:.2g})")
    with tempfile.TemporaryDirectory() as tmp:
        end_to_end(pairs, Path(tmp), args.repeats)


def end_to_end(pairs, folder: Path, repeats: int) -> None:
    from msseg.image import Image

    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    for i, (pred, ref) in enumerate(pairs):
        for side, mask in (("pred", pred), ("ref", ref)):
            io.save(Image(mask.astype(np.uint8), affine), folder / side / f"case{i:02d}.nii.gz")
    command = [str(Path(sys.executable).with_name("msseg")), "evaluate", "-p",
               str(folder / "pred"), "-r", str(folder / "ref"), "-o", str(folder / "m.csv"),
               "--overwrite"]
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        if os.waitstatus_to_exitcode(status):
            raise RuntimeError(f"{command}: {proc.stderr.read().decode()[-1500:]}")
        runs.append((time.perf_counter() - start, usage.ru_maxrss / 1024))
    each = ", ".join(f"{s:.2f}" for s, _ in runs)
    print(f"msseg evaluate, {len(pairs)} pairs from files, end to end: "
          f"{statistics.median(s for s, _ in runs):.2f} s (runs {each}), "
          f"peak {statistics.median(m for _, m in runs):.0f} MB")


if __name__ == "__main__":
    main()
