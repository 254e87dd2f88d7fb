"""``msseg demo``: the main job on built-in data, no download and no ../shared needed.

Generates an axial T2w-like phantom chunk with known cord and lesions, segments it with the
bundled ``lesion_ms_axial_t2`` model (``msseg segment``, with a QC page), then scores the masks
against the phantom's truth with ``msseg evaluate`` and prints cord Dice, lesion Dice, lesion F1
and the elapsed time. Without a bundled model it evaluates a perturbed copy of the truth instead.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="segment and score a synthetic phantom", description=__doc__)
    p.add_argument("-o", "--outdir", type=Path, default=Path("demo_out"))
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from msseg import io
    from msseg.cli import evaluate, segment
    from msseg.cli.common import run_subcommand
    from msseg.evaluation.engine import EvalOptions, evaluate_masks
    from msseg.evaluation.voxel import dice
    from msseg.models.registry import bundled_models
    from msseg.phantom import make_phantom, perturb_mask

    start = time.perf_counter()
    out = args.outdir
    phantom = make_phantom(args.seed, n_lesions=6, shape=(256, 256, 15))
    image_path = io.save(phantom.image, out / "sub-phantom_T2w.nii.gz")
    ref_path = io.save_like(phantom.lesion.data, phantom.image,
                            out / "truth" / "sub-phantom_T2w_lesion-manual.nii.gz")
    io.save_like(phantom.cord.data, phantom.image,
                 out / "truth" / "sub-phantom_T2w_seg-manual.nii.gz")
    print(f"phantom {phantom.image.shape} at {phantom.image.spacing} mm with "
          f"{len(phantom.lesions)} lesions -> {image_path}")
    if any(m.path.name == "lesion_ms_axial_t2" for m in bundled_models()):
        seg = out / "segmentation"
        for stale in seg.glob("sub-phantom_T2w*"):  # the demo recomputes every time
            stale.unlink()
        code = run_subcommand(segment, ["segment", "lesion_ms_axial_t2", "-i", str(image_path),
                                  "-o", str(seg), "--qc", str(out / "qc")])
        if code:
            return code
        cord = io.load(seg / "sub-phantom_T2w_label-SC_seg.nii.gz").data > 0
        pred_path = seg / "sub-phantom_T2w_label-lesion_seg.nii.gz"
    else:
        print("no bundled model: scoring a perturbed copy of the truth instead")
        cord = phantom.cord.data > 0
        pred = perturb_mask(phantom.lesion.data, seed=args.seed, allowed=phantom.cord.data > 0)
        pred_path = io.save_like(pred, phantom.image, out / "pred" / "sub-phantom_T2w.nii.gz")
    code = run_subcommand(evaluate, ["evaluate", "-p", str(pred_path), "-r", str(ref_path),
                               "--overwrite", "-o", str(out / "metrics.csv"), "--per-lesion",
                               str(out / "lesions.csv"), "--summary", str(out / "summary.csv")])
    lesion, _ = evaluate_masks(io.load(pred_path).data > 0, phantom.lesion.data > 0,
                               phantom.image.spacing, EvalOptions())
    cord_dice = dice(cord, phantom.cord.data > 0)
    print(f"cord Dice {cord_dice:.3f} | lesion Dice {lesion['dice']:.3f} | lesion F1 "
          f"{lesion['lesion_f1']:.3f} ({lesion['n_pred_lesions']} found of "
          f"{lesion['n_ref_lesions']}) | {time.perf_counter() - start:.1f} s in all")
    return code

