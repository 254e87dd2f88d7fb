"""``msseg straighten``: straighten the spinal cord along its centerline, with both warps.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from msseg.cli.common import check_outputs
from msseg.errors import MssegError

XY_SIZE_MM = 35.0     # msseg.preprocess.straighten.XY_SIZE_MM
SMOOTHING_MM = 5.0    # msseg.preprocess.straighten.SMOOTHING_MM

INTERP = {"linear": 1, "cubic": 3, "nearest": 0}

DESCRIPTION = """\
``msseg straighten``: straighten the spinal cord along its centerline, with both warps.

    msseg straighten -i IMAGE [-s CORD_MASK] -o OUTDIR [--xy-size-mm 35] [--spacing MM]

The centerline is the cord mask's centre of mass per axial slice (``-s``) or, without a mask,
msseg's stage-1 centerline; a smoothing spline is fitted to it, and each straightened slice is
the plane orthogonal to the curve at its arc length, in a rotation-minimising frame
(:mod:`msseg.preprocess.straighten`). Writes to OUTDIR, as ``sct_straighten_spinalcord`` does:
``X_straight.nii.gz``, ``warp_curve2straight.nii.gz`` and ``warp_straight2curve.nii.gz``
(ITK/ANTs displacement fields: 5D, vector intent, mm, LPS — usable by ``antsApplyTransforms``,
``sct_apply_transfo`` and ``msseg warp``), ``straight_ref.nii.gz`` (the straight grid), with
``-s`` the straightened mask ``<mask>_straight.nii.gz``, and ``X_straightening.json`` with the
accuracy SCT reports: the maximum and RMS in-plane distance (mm) of the straightened
centerline from the straight line.
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("straighten", help="straighten the cord (with ITK warping fields)",
                       description=DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-i", "--input", type=Path, required=True)
    p.add_argument("-s", "--cord", type=Path, help="cord mask (default: msseg's centerline)")
    p.add_argument("-o", "--outdir", type=Path, required=True)
    p.add_argument("--xy-size-mm", type=float, default=XY_SIZE_MM,
                   help="in-plane field of view of the straightened image")
    p.add_argument("--spacing", type=float,
                   help="isotropic voxel size (default: the input's finest in-plane size, "
                   "its S-I size along the cord)")
    p.add_argument("--smoothing-mm", type=float, default=SMOOTHING_MM,
                   help="cutoff wavelength of the centerline's smoothing spline")
    p.add_argument("--interp", choices=tuple(INTERP), default="linear")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from msseg import io
    from msseg.preprocess import straighten as st

    stem = io.strip_nifti_suffix(args.input.name)
    names = {"image": f"{stem}_straight.nii.gz", "c2s": "warp_curve2straight.nii.gz",
             "s2c": "warp_straight2curve.nii.gz", "ref": "straight_ref.nii.gz",
             "report": f"{stem}_straightening.json"}
    if args.cord is not None:
        names["cord"] = f"{io.strip_nifti_suffix(args.cord.name)}_straight.nii.gz"
    outputs = {k: args.outdir / v for k, v in names.items()}
    check_outputs(outputs.values(), args.overwrite,
                  inputs=[p for p in (args.input, args.cord) if p is not None])
    if args.xy_size_mm <= 0 or (args.spacing is not None and args.spacing <= 0):
        raise MssegError("--xy-size-mm and --spacing must be positive")
    image = io.load(args.input)
    cord = _cord(args, image)
    points = st.centerline_of_mask(cord) if cord is not None else _stage1(image, args)
    spacing = (args.spacing,) * 3 if args.spacing else st.default_spacing(image)
    geometry = st.geometry_for(image, points, args.xy_size_mm, spacing, args.smoothing_mm)
    curve = geometry.curve
    straight = st.straighten_image(image, geometry, INTERP[args.interp])
    report = {"input": str(args.input), "centerline": "cord mask" if cord is not None else
              "msseg stage 1", "curve_length_mm": round(curve.length, 2),
              "spacing_mm": list(spacing), "xy_size_mm": args.xy_size_mm,
              "smoothing_mm": args.smoothing_mm}
    straight_cord = None
    if cord is not None:
        straight_cord = st.straighten_mask(cord, geometry)
        report.update(st.straightening_accuracy(straight_cord,
                                                st.complete_slices(geometry, image)))
    else:
        report.update(st.points_accuracy(geometry, points))
    c2s = st.displacement_field(geometry, geometry.shape, geometry.affine, to_straight=False)
    s2c = st.displacement_field(geometry, image.shape, image.affine, to_straight=True)
    io.save_on_grid(straight.data, straight.affine, outputs["image"], image, np.float32)
    io.save_on_grid(straight.data, straight.affine, outputs["ref"], image, np.float32)
    if straight_cord is not None:
        io.save_on_grid(straight_cord.data, straight_cord.affine, outputs["cord"], image)
    io.save_displacement(c2s, geometry.affine, outputs["c2s"])
    io.save_displacement(s2c, image.affine, outputs["s2c"])
    outputs["report"].write_text(json.dumps(report, indent=1))
    print(f"{outputs['image']}: {geometry.shape}, curve {curve.length:.1f} mm; straightened "
          f"centerline from the straight line: max {report['max_distance_mm']:.2f} mm, "
          f"RMS {report['rms_distance_mm']:.2f} mm")
    return 0


def _cord(args, image):
    import numpy as np

    from msseg import io

    if args.cord is None:
        return None
    cord = io.load(args.cord)
    if cord.shape != image.shape or not np.allclose(cord.affine, image.affine, atol=1e-3):
        raise MssegError(f"{args.cord}: mask grid {cord.shape} differs from {args.input}'s "
                         f"{image.shape}")
    return cord


def _stage1(image, args):
    import numpy as np

    from msseg.centerline.detect import CenterlineOptions
    from msseg.inference.centerline import CenterlineFinder
    from msseg.inference.options import check_image

    check_image(image, str(args.input))
    line = CenterlineFinder(device=args.device,
                            options=CenterlineOptions(slice_step_mm=5.0)).find(image)
    if not line.found:
        raise MssegError(f"{args.input}: no spinal cord found (give its mask with -s)")
    found = np.flatnonzero(line.detected)
    return line.world()[found[0]:found[-1] + 1]
