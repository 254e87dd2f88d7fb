"""``msseg warp``: apply a displacement field (ITK / ANTs / SCT convention) to an image or mask.

    msseg warp -i IMAGE_OR_MASK -w WARP -d DEST -o OUT [--interp linear|nearest|cubic]
               [--threshold 0.5]

For each voxel centre p of DEST's grid, the field (5D, vector intent, mm, LPS; linearly
interpolated at p) gives d and the input is sampled at p + d — what ``antsApplyTransforms`` and
``sct_apply_transfo`` do. ``--threshold`` binarises the result (the axial-T2w paper warped masks
with linear interpolation, then kept values ≥ 0.5). The output has DEST's grid and header.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from msseg.cli.common import check_outputs
from msseg.errors import MssegError

INTERP = {"linear": 1, "nearest": 0, "cubic": 3}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("warp", help="apply a displacement field (ITK convention)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-i", "--input", type=Path, required=True)
    p.add_argument("-w", "--warp", type=Path, required=True)
    p.add_argument("-d", "--dest", type=Path, required=True, help="destination grid")
    p.add_argument("-o", "--output", type=Path, required=True)
    p.add_argument("--interp", choices=tuple(INTERP), default="linear")
    p.add_argument("--threshold", type=float, help="binarise: values ≥ this become 1")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from msseg import io
    from msseg.preprocess.straighten import apply_field

    if not io.is_nifti(args.output):
        raise MssegError(f"{args.output}: output must be a .nii or .nii.gz file")
    check_outputs([args.output], args.overwrite, inputs=[args.input, args.warp, args.dest])
    moving = io.load(args.input)
    field, field_affine = io.load_displacement(args.warp)
    dest = io.load(args.dest)
    out = apply_field(moving, field, field_affine, dest.shape, dest.affine, INTERP[args.interp])
    if args.threshold is not None:
        io.save_like((out >= args.threshold).astype(np.uint8), dest, args.output)
    else:
        io.save_like(out, dest, args.output, np.float32)
    print(f"{args.input.name} -> {args.output} (on {args.dest.name}'s grid)")
    return 0
