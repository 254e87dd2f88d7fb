"""``msseg centerline``: the spinal cord centerline of a scan, one point per axial slice.

Stage 1 of the two-stage framework (Gros et al. 2019): CNN1's cord heatmap (or, with
``--method intensity``, a blob-filter heatmap without a CNN), then a globally optimal smooth
path along the S–I axis. Writes, per input ``X.nii.gz`` in OUTDIR, ``X_centerline.csv`` (slice,
x, y, z in world mm, whether the slice's point was detected or interpolated) and
``X_centerline.nii.gz`` (one voxel per axial slice, the input's grid and header). All or
nothing: every input is processed before the first file is written, so one bad input leaves no
output behind.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from msseg.cli.common import check_outputs
from msseg.errors import MssegError

METHODS = ("cnn", "intensity")       # msseg.inference.centerline.METHODS
SMOOTHNESS = 1.0                     # msseg.centerline.optimize.PathCost().smoothness
SMOOTHING_MM = 3.0                   # msseg.centerline.detect.CenterlineOptions().smoothing_mm


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("centerline", help="cord centerline (CNN1 + optimal path)",
                       description=__doc__)
    p.add_argument("-i", "--input", type=Path, required=True, nargs="+", help="NIfTI images")
    p.add_argument("-o", "--outdir", type=Path, required=True, help="output folder")
    p.add_argument("--method", choices=METHODS, default="cnn")
    p.add_argument("--model", type=Path, help="CNN1 model folder (default: bundled)")
    p.add_argument("--smoothness", type=float, default=SMOOTHNESS,
                   help="λ of the path cost (per mm² of displacement per mm of height)")
    p.add_argument("--smoothing-mm", type=float, default=SMOOTHING_MM)
    p.add_argument("--slice-step-mm", type=float, default=0.0,
                   help="heatmap on slices this far apart, bridged by the path (0: every slice)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from msseg import io
    from msseg.centerline.detect import CenterlineOptions
    from msseg.centerline.optimize import PathCost
    from msseg.inference.centerline import CenterlineFinder, write_centerline
    from msseg.inference.options import check_image
    from msseg.models.registry import open_model

    options = CenterlineOptions(smoothing_mm=args.smoothing_mm,
                                slice_step_mm=args.slice_step_mm,
                                cost=PathCost(smoothness=args.smoothness))
    args.input = list(dict.fromkeys(args.input))
    stems = [io.strip_nifti_suffix(p.name) for p in args.input]
    for path, stem in zip(args.input, stems, strict=True):
        if not io.is_nifti(path):
            raise MssegError(f"{path}: not a NIfTI file (.nii or .nii.gz)")
        first = args.input[stems.index(stem)]
        if first != path:
            raise MssegError(f"{path}: same name as {first}; their outputs would collide")
    check_outputs([args.outdir / f"{s}_centerline{e}" for s in stems
                   for e in (".csv", ".nii.gz")], args.overwrite, inputs=args.input)
    model = open_model(args.model) if args.model else None
    finder = CenterlineFinder(args.method, model, args.device, options)
    found = []
    for path in args.input:  # all or nothing: every input is processed before any write
        image = io.load(path)
        check_image(image, str(path))
        line = finder.find(image)
        if not line.found:
            raise MssegError(f"{path}: no spinal cord found")
        found.append((line, _geometry_only(image)))
    for path, stem, (line, grid) in zip(args.input, stems, found, strict=True):
        csv, nii = write_centerline(line, grid, args.outdir, stem)
        print(f"{path.name}: {int(line.detected.sum())}/{len(line.detected)} slices detected "
              f"-> {csv}, {nii}")
    return 0


def _geometry_only(image):
    """The image's grid and header without its voxels (kept until every input is done)."""
    import numpy as np

    return image.with_data(np.broadcast_to(np.zeros((), image.data.dtype), image.shape))
