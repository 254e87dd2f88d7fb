"""``msseg morphometry``: cord cross-sectional area and shape per axial slice, after SCT's
``sct_process_segmentation`` (same definitions and numbers: :mod:`msseg.morphometry`).

``-s`` takes cord masks (binary or soft, any orientation) or folders of them (files named like
a cord mask: ``*_seg-manual``, ``*_label-SC_seg``…). By default one row per mask: the mean and
standard deviation of every measure over the slices holding cord and the summed length, as
``sct_process_segmentation`` without ``-perslice``; ``--per-slice``: one row per slice (RPI
index, inferior first). Angle correction (the slice projected onto the plane across the cord,
from the mask's own smoothed centerline) is on unless ``--no-angle-correction``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from msseg.cli.common import check_outputs, print_table
from msseg.errors import MssegError
from msseg.progress import progress


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("morphometry", help="cord CSA and shape per slice (as SCT computes them)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-s", "--seg", type=Path, nargs="+", required=True,
                   help="cord masks, or folders of them")
    p.add_argument("-o", "--output", type=Path, required=True, help="CSV file to write")
    p.add_argument("--per-slice", action="store_true", help="one row per slice")
    p.add_argument("--no-angle-correction", dest="angle_correction", action="store_false",
                   help="measure the axial slices as acquired")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    from msseg import io
    from msseg.morphometry import aggregate, cord_morphometry

    masks = _masks(args.seg)
    check_outputs([args.output], args.overwrite, inputs=masks, suffixes=(".csv",))
    rows = []   # the CSV is written after every mask was read: a bad one leaves nothing
    for path in progress(masks, "morphometry", min_items=2):
        table = cord_morphometry(_checked(io.load(path), path), args.angle_correction)
        if args.per_slice:
            rows.append(table.assign(mask=str(path)))
        else:
            rows.append(pd.DataFrame([{"mask": str(path), **aggregate(table)}]))
    out = pd.concat(rows, ignore_index=True)
    out = out[["mask", *[c for c in out.columns if c != "mask"]]]
    io.write_csv(out, args.output)
    if not args.per_slice:
        print_table(out.assign(mask=[Path(m).name for m in out["mask"]])[
            ["mask", "slices", "mean_area", "std_area", "mean_diameter_AP", "mean_diameter_RL",
             "sum_length"]], "msseg morphometry (mm², mm)")
    print(f"wrote {args.output} ({len(out)} rows)")
    return 0


def _masks(paths: list[Path]) -> list[Path]:
    from msseg import io
    from msseg.bids import CORD_SUFFIXES

    found = []
    for path in paths:
        if path.is_dir():
            inside = [p for p in io.find_nifti(path)
                      if io.strip_nifti_suffix(p.name).endswith(CORD_SUFFIXES)]
            if not inside:
                raise MssegError(f"{path}: no cord mask in this folder (names ending in "
                                 f"{', '.join(CORD_SUFFIXES)})")
            found += inside
        elif not path.exists():
            raise MssegError(f"{path}: no such file")
        else:
            found.append(path)
    return found


def _checked(mask, path: Path):
    """A 3D mask with values in [0, 1] (binary or soft), or a one-line error naming it."""
    import numpy as np

    if mask.data.ndim != 3:
        raise MssegError(f"{path}: a cord mask must be 3D (shape {mask.data.shape})")
    if mask.data.size and (float(np.nanmin(mask.data)) < 0 or float(np.nanmax(mask.data)) > 1):
        raise MssegError(f"{path}: values outside 0–1: not a cord mask (a label map?)")
    return mask
