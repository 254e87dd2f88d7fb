"""``msseg compare``: new, enlarging, stable, shrinking and resolved lesions between a baseline
and a follow-up scan.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from msseg.errors import MssegError

OUTPUTS = ("lesions.csv", "summary.csv", "status.nii.gz", "change.nii.gz",
           "followup_on_baseline.nii.gz", "compare.png", "rules.json")
POOR_OVERLAP = 0.5   # world boxes overlapping less than this: headers do not align the scans

DESCRIPTION = """\
``msseg compare``: new, enlarging, stable, shrinking and resolved lesions between a baseline
and a follow-up scan.

    msseg compare -b BASELINE_LESIONS -f FOLLOWUP_LESIONS [--baseline-image B
                  --followup-image F [--no-register]] -o OUTDIR [--threshold T]
                  [--min-new-voxels 3] [--enlarge 0.5] [--shrink 0.5] [--threads N]
    msseg compare --baseline-image B --followup-image F --segment TASK -o OUTDIR

With the two images, the follow-up is rigidly registered to the baseline (SimpleITK, mutual
information on a regular sampling grid, so two runs give the same result) and its lesion mask
brought onto the baseline grid; without them, or with --no-register (pairs already aligned),
by their headers, with a warning when the two fields of view barely overlap in the world.
--segment TASK segments both images with one model after the registration (the follow-up
resampled onto the baseline grid first), so that the two masks differ by the changes, not by
how each scan was segmented. Lesion masks must be binary; a probability map needs
--threshold T (voxels > T). Rules (msseg.longitudinal): a follow-up lesion touching no baseline
lesion is new (≥ --min-new-voxels voxels); one touching baseline lesions is enlarging when its
volume is ≥ (1 + --enlarge) × theirs, shrinking when ≤ (1 − --shrink) × theirs, else stable; a
baseline lesion touched by none is resolved. OUTDIR: lesions.csv (one row per lesion, status
and volumes), summary.csv (counts per status, total volumes), status.nii.gz (baseline grid and
header: 1 new, 2 enlarging, 3 stable, 4 shrinking, 5 resolved, 6 below-size), change.nii.gz
(1: voxels gained by new and enlarging lesions, 2: voxels lost by resolved and shrinking
ones; stable lesions' boundary jitter is not a change),
followup_on_baseline.nii.gz, transform.tfm (with images), rules.json and compare.png (slices
through the changes, coloured by status).
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="new and enlarging lesions, baseline vs follow-up",
                       description=DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-b", "--baseline", type=Path, help="baseline lesion mask")
    p.add_argument("-f", "--followup", type=Path, help="follow-up lesion mask")
    p.add_argument("--baseline-image", type=Path)
    p.add_argument("--followup-image", type=Path)
    p.add_argument("--segment", metavar="TASK",
                   help="segment both images with this task (instead of -b/-f masks)")
    p.add_argument("--no-register", dest="register", action="store_false",
                   help="the images are already aligned: no registration")
    p.add_argument("--threshold", type=float,
                   help="binarise probability maps given as masks (voxels > T)")
    p.add_argument("--threads", type=int, default=0,
                   help="threads of the segmentation (0: all) and of the registration (0: "
                   "one, so that two runs give the same transform to the last bit)")
    p.add_argument("-o", "--outdir", type=Path, required=True)
    p.add_argument("--min-new-voxels", type=int, default=3)
    p.add_argument("--enlarge", type=float, default=0.5,
                   help="relative volume increase that makes a lesion enlarging (0.5: +50%%)")
    p.add_argument("--shrink", type=float, default=0.5,
                   help="relative volume decrease that makes a lesion shrinking")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import json

    import pandas as pd

    from msseg import io
    from msseg.cli.common import check_outputs, print_table
    from msseg.longitudinal import Rules, compare

    _check_options(args)
    outputs = [args.outdir / n for n in OUTPUTS]
    inputs = [p for p in (args.baseline, args.followup, args.baseline_image,
                          args.followup_image) if p is not None]
    check_outputs(outputs, args.overwrite, inputs=inputs)
    images = [io.load(p) if p is not None else None for p in (args.baseline_image,
                                                                args.followup_image)]
    if args.segment is None:
        masks = [_binary(io.load(p), p, args.threshold) for p in (args.baseline, args.followup)]
    rules = Rules(args.min_new_voxels, args.enlarge, args.shrink)
    if args.segment is not None:
        result = _segment_and_compare(args, images, rules)
    else:
        if images[0] is None or not args.register:
            _warn_if_apart(masks[0], masks[1])
        start = _registering(images[0] is not None and args.register)
        result = compare(*masks, *images, rules=rules, register=args.register,
                         threads=args.threads)
        _registered(result.transform, start)
    baseline = result.status
    io.write_csv(result.lesions, args.outdir / "lesions.csv")
    io.write_csv(pd.DataFrame([result.summary]), args.outdir / "summary.csv")
    io.save_like(result.status.data, baseline, args.outdir / "status.nii.gz")
    io.save_like(result.change.data, baseline, args.outdir / "change.nii.gz")
    io.save_like(result.followup.data, baseline, args.outdir / "followup_on_baseline.nii.gz")
    if result.transform is not None:
        import SimpleITK as sitk

        sitk.WriteTransform(result.transform, str(args.outdir / "transform.tfm"))
    figure(result, images[0], args.outdir / "compare.png")
    print_table(pd.DataFrame([result.summary]), "msseg compare (counts; volumes in mm³)")
    io.write_text(json.dumps({"rules": vars(rules), "registered": result.transform is not None,
                              "segment": args.segment, "threshold": args.threshold},
                             indent=1), args.outdir / "rules.json")
    print(f"results in {args.outdir}")
    return 0


def _check_options(args: argparse.Namespace) -> None:
    if args.min_new_voxels < 1 or args.enlarge <= 0 or not 0 < args.shrink < 1:
        raise MssegError("--min-new-voxels ≥ 1, --enlarge > 0 and 0 < --shrink < 1")
    with_images = args.baseline_image is not None or args.followup_image is not None
    if args.segment is not None:
        if args.baseline_image is None or args.followup_image is None:
            raise MssegError("--segment TASK segments the two images: give --baseline-image "
                             "and --followup-image")
        if args.baseline is not None or args.followup is not None:
            raise MssegError("--segment makes the lesion masks: leave out -b / -f")
    elif args.baseline is None or args.followup is None:
        raise MssegError("give -b BASELINE_MASK and -f FOLLOWUP_MASK (or --segment TASK with "
                         "the two images)")
    if with_images and args.register:
        from msseg.extras import require  # before the inputs are read and checked

        require("SimpleITK", "compare with images (registration)")
    if args.threshold is not None and not 0 <= args.threshold < 1:
        raise MssegError(f"--threshold {args.threshold:g}: give a probability in [0, 1)")
    if args.threads < 0:
        raise MssegError(f"--threads {args.threads}: must be ≥ 0")


def _binary(mask, path: Path, threshold: float | None):
    """A 0/1 lesion mask; a probability map with --threshold; anything else refused."""
    import numpy as np

    from msseg.evaluation.engine import is_binary

    if threshold is not None:
        low, high = float(mask.data.min()), float(mask.data.max())
        if low < 0 or high > 1:
            raise MssegError(f"{path}: values {low:g}–{high:g} are not "
                             "probabilities (0–1): --threshold needs a probability map")
        return mask.with_data((mask.data > threshold).astype(np.uint8))
    if not is_binary(mask.data):
        values = np.unique(mask.data)
        kind = "a probability map" if values.max() <= 1 else "not a lesion mask (an image?)"
        raise MssegError(f"{path}: not binary ({len(values)} distinct values, up to "
                         f"{values.max():g}): {kind}; give a 0/1 mask, or --threshold T")
    return mask


def _warn_if_apart(baseline, followup) -> None:
    import sys

    from msseg.longitudinal import world_overlap

    overlap = world_overlap(baseline, followup)
    if overlap < POOR_OVERLAP:
        print(f"warning: the two fields of view overlap by {overlap:.0%} in the world: the "
              "headers may not align these sessions; give --baseline-image and "
              "--followup-image to register them", file=sys.stderr)


def _registering(registers: bool) -> float:
    if registers:
        print("registering the follow-up to the baseline (rigid, mutual information)…",
              flush=True)
    return time.perf_counter()


def _registered(transform, start: float) -> None:
    if transform is not None:
        print(f"registered in {time.perf_counter() - start:.1f} s", flush=True)


def _segment_and_compare(args: argparse.Namespace, images, rules):
    """Register the follow-up image to the baseline, resample it onto the baseline grid,
    segment both with one model, then compare the masks on that grid."""
    from dataclasses import replace

    from msseg.inference.options import SegmentOptions
    from msseg.inference.segment import make_segmenter
    from msseg.longitudinal import compare, image_on_baseline, register_rigid
    from msseg.models.registry import find_model

    baseline_image, followup_image = images
    segmenter = make_segmenter(find_model(args.segment), SegmentOptions(threads=args.threads))
    if getattr(segmenter.plan, "frame", None) == "resize":      # a brain model: its checks
        from msseg.inference.brain import brain_input
        from msseg.progress import stderr

        baseline_image, followup_image = (
            brain_input(image, str(path),
                        say=lambda line, p=path: stderr().print(f"{p.name}: {line}"))[0]
            for image, path in zip(images, (args.baseline_image, args.followup_image),
                                   strict=True))
    start = _registering(args.register)
    transform = register_rigid(baseline_image, followup_image, args.threads) \
        if args.register else None
    _registered(transform, start)
    moved = image_on_baseline(followup_image, baseline_image, transform)
    masks = []
    for image, name in ((baseline_image, "baseline"), (moved, "follow-up")):
        result = segmenter.segment(image, name)
        if "lesion" not in result.masks:
            raise MssegError(f"{args.segment}: the task has no lesion output")
        masks.append(result.masks["lesion"])
    return replace(compare(masks[0], masks[1], rules=rules), transform=transform)


COLOURS = {1: "red", 2: "orange", 3: "lime", 4: "cyan", 5: "magenta", 6: "yellow"}


def figure(result, image, path: Path, n: int = 6) -> Path:
    """Axial slices (the S–I voxel axis) through the changes, status contours coloured."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from msseg.longitudinal import STATUS_CODES
    from msseg.preprocess.orient import to_rpi

    status = to_rpi(result.status).data
    back = to_rpi(image).data if image is not None else (status > 0).astype(float)
    slices = np.flatnonzero(status.any(axis=(0, 1)))
    picks = slices[np.linspace(0, len(slices) - 1, min(n, len(slices))).round().astype(int)] \
        if len(slices) else [status.shape[2] // 2]
    fig, axes = plt.subplots(1, len(picks), figsize=(3 * len(picks), 3.4), squeeze=False)
    lo, hi = np.percentile(back, [1, 99.5])
    for ax, k in zip(axes[0], picks, strict=True):
        ax.imshow(back[:, :, k].T, cmap="gray", origin="lower", vmin=lo, vmax=hi)
        for code, colour in COLOURS.items():
            if (status[:, :, k] == code).any():
                ax.contour((status[:, :, k] == code).T, [0.5], colors=colour, linewidths=1)
        ax.set_title(f"slice {k}", fontsize=8)
        ax.axis("off")
    names = {v: k for k, v in STATUS_CODES.items()}
    handles = [matplotlib.lines.Line2D([], [], color=c, label=names[k])
               for k, c in COLOURS.items()]
    fig.legend(handles=handles, loc="lower center", ncol=6, fontsize=8)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
