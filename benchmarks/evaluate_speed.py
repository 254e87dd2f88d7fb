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

MetricsReloaded, the peer the speed issue names (``--metricsreloaded DIR``: a folder holding its
``MetricsReloaded`` package, e.g. a checkout of github.com/Project-MONAI/MetricsReloaded; it is
not on PyPI), runs in a separate process — its own interpreter with ``--peer-python``, so its
environment never mixes with msseg's — on the same 30 pairs (saved to an .npz): its
``BinaryPairwiseMeasures`` with the measures ``dsc``, ``nsd`` (τ = 1 mm), ``hd_perc`` (95) and
``assd``, pixdim (1, 1, 1), timed inside that process (imports and loading not counted).
Its values are compared with msseg's and the ratio MetricsReloaded / msseg is printed twice:
against msseg's in-memory time for every metric, and against the whole ``msseg evaluate``
command from files.

Run: .venv/bin/python benchmarks/evaluate_speed.py [--data ../shared/data] [--repeats 5]
     [--metricsreloaded DIR [--peer-python PYTHON]] [--msseg .venv-bench/bin/msseg]
Prints per-case times and the ratios peer / msseg measured in this run.
"""

from __future__ import annotations

import argparse
import json
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
from msseg.phantom import perturb_mask


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


METRICSRELOADED = """
import json, sys, time, warnings
import numpy as np
from MetricsReloaded.metrics.pairwise_measures import BinaryPairwiseMeasures
warnings.simplefilter("ignore")
arrays = np.load(sys.argv[1])
pairs = [(arrays[f"pred{i}"], arrays[f"ref{i}"]) for i in range(len(arrays.files) // 2)]
measures = ["dsc", "nsd", "hd_perc", "assd"]
results, start = [], time.perf_counter()
for pred, ref in pairs:
    bpm = BinaryPairwiseMeasures(pred, ref, measures=measures, pixdim=(1, 1, 1),
                                 dict_args={"nsd": 1.0, "hd_perc": 95})
    results.append({m: float(bpm.measures_dict[m][0]()) for m in measures})
print(json.dumps({"seconds": time.perf_counter() - start, "results": results}))
"""
#: MetricsReloaded's measure -> msseg's column
MR_NAMES = {"dsc": "dice", "nsd": "nsd", "hd_perc": "hd95_mm", "assd": "assd_mm"}


def metricsreloaded(pairs, folder: Path, package_dir: Path, python: str
                    ) -> tuple[list[dict], float]:
    """The peer in its own process: per-case values and the seconds of its metric loop."""
    arrays = folder / "pairs.npz"
    np.savez(arrays, **{f"{side}{i}": m.astype(np.uint8) for i, (p, r) in enumerate(pairs)
                        for side, m in (("pred", p), ("ref", r))})
    env = {**os.environ, "PYTHONPATH": str(package_dir)}
    out = subprocess.run([python, "-c", METRICSRELOADED, str(arrays)], env=env,
                         capture_output=True, text=True, check=True)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    return report["results"], report["seconds"]


def timed(fn, pairs):
    results, start = [], time.perf_counter()
    for pred, ref in pairs:
        results.append(fn(pred, ref))
    return results, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).parents[2] / "shared/data")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--metricsreloaded", type=Path,
                        help="folder holding the MetricsReloaded package (the peer)")
    parser.add_argument("--peer-python", default=sys.executable,
                        help="interpreter of the peer's environment")
    parser.add_argument("--msseg", default=str(Path(sys.executable).with_name("msseg")),
                        help="the msseg command timed end to end (e.g. .venv-bench/bin/msseg, "
                        "built by make bench-env)")
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
        command_s = end_to_end(pairs, Path(tmp), args.repeats, args.msseg)
        if args.metricsreloaded:
            mr, t_mr = metricsreloaded(pairs, Path(tmp), args.metricsreloaded.resolve(),
                                       args.peer_python)
            worst = max(abs(row[m] - ours_row[name]) for row, ours_row in zip(mr, ours, strict=True)
                        for m, name in MR_NAMES.items())
            print(f"MetricsReloaded (dsc, nsd, hd_perc, assd): {1000 * t_mr / n:8.1f} ms/case, "
                  f"{t_mr:.1f} s for the {n} pairs (largest value difference: {worst:.2g})")
            print(f"ratio MetricsReloaded/msseg: {t_mr / t_ours:.1f}x in memory (msseg: every "
                  f"metric), {t_mr / command_s:.1f}x against the whole msseg evaluate command")


def end_to_end(pairs, folder: Path, repeats: int, msseg: str) -> float:
    from msseg.image import Image

    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    for i, (pred, ref) in enumerate(pairs):
        for side, mask in (("pred", pred), ("ref", ref)):
            io.save(Image(mask.astype(np.uint8), affine), folder / side / f"case{i:02d}.nii.gz")
    command = [msseg, "evaluate", "-p",
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
    seconds = statistics.median(s for s, _ in runs)
    print(f"msseg evaluate, {len(pairs)} pairs from files, end to end: {seconds:.2f} s "
          f"(runs {each}), peak {statistics.median(m for _, m in runs):.0f} MB")
    return seconds


if __name__ == "__main__":
    main()
