"""``msseg compare``: new, enlarging, stable, shrinking and resolved lesions between a baseline
and a follow-up scan.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from msseg.errors import MssegError

OUTPUTS = ("lesions.csv", "summary.csv", "status.nii.gz", "followup_on_baseline.nii.gz",
           "compare.png", "rules.json")

DESCRIPTION = """\
``msseg compare``: new, enlarging, stable, shrinking and resolved lesions between a baseline
and a follow-up scan.

    msseg compare -b BASELINE_LESIONS -f FOLLOWUP_LESIONS [--baseline-image B
                  --followup-image F] -o OUTDIR [--min-new-voxels 3] [--enlarge 0.5]
                  [--shrink 0.5] [--overwrite]

With the two images, the follow-up is rigidly registered to the baseline (SimpleITK, mutual
information) and its lesion mask brought onto the baseline grid; without them the masks are
aligned by their headers. Rules (msseg.longitudinal): a follow-up lesion touching no baseline
lesion is new (≥ --min-new-voxels voxels); one touching baseline lesions is enlarging when its
volume is ≥ (1 + --enlarge) × theirs, shrinking when ≤ (1 − --shrink) × theirs, else stable; a
baseline lesion touched by none is resolved. OUTDIR: lesions.csv (one row per lesion, status
and volumes), summary.csv (counts per status, total volumes), status.nii.gz (baseline grid and
header: 1 new, 2 enlarging, 3 stable, 4 shrinking, 5 resolved, 6 below-size),
followup_on_baseline.nii.gz, transform.tfm (with images), rules.json and compare.png (slices
through the changes, coloured by status).
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="new and enlarging lesions, baseline vs follow-up",
                       description=DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-b", "--baseline", type=Path, required=True, help="baseline lesion mask")
    p.add_argument("-f", "--followup", type=Path, required=True, help="follow-up lesion mask")
    p.add_argument("--baseline-image", type=Path)
    p.add_argument("--followup-image", type=Path)
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

    if args.min_new_voxels < 1 or args.enlarge <= 0 or not 0 < args.shrink < 1:
        raise MssegError("--min-new-voxels ≥ 1, --enlarge > 0 and 0 < --shrink < 1")
    outputs = [args.outdir / n for n in OUTPUTS]
    inputs = [p for p in (args.baseline, args.followup, args.baseline_image,
                          args.followup_image) if p is not None]
    check_outputs(outputs, args.overwrite, inputs=inputs)
    if args.baseline_image is not None or args.followup_image is not None:
        from msseg.extras import require  # before the inputs are read and checked

        require("SimpleITK", "compare with images (registration)")
    images = [io.load(p) if p is not None else None for p in (args.baseline_image,
                                                                args.followup_image)]
    result = compare(io.load(args.baseline), io.load(args.followup), *images,
                     rules=Rules(args.min_new_voxels, args.enlarge, args.shrink))
    io.write_csv(result.lesions, args.outdir / "lesions.csv")
    io.write_csv(pd.DataFrame([result.summary]), args.outdir / "summary.csv")
    io.save_like(result.status.data, io.load(args.baseline), args.outdir / "status.nii.gz")
    io.save_like(result.followup.data, io.load(args.baseline),
                 args.outdir / "followup_on_baseline.nii.gz")
    if result.transform is not None:
        import SimpleITK as sitk

        sitk.WriteTransform(result.transform, str(args.outdir / "transform.tfm"))
    figure(result, images[0], args.outdir / "compare.png")
    print_table(pd.DataFrame([result.summary]), "msseg compare")
    io.write_text(json.dumps({"rules": vars(Rules(args.min_new_voxels, args.enlarge,
                                                   args.shrink))}, indent=1),
                  args.outdir / "rules.json")
    print(f"results in {args.outdir}")
    return 0


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
