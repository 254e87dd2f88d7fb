"""``msseg morphometry``: cord cross-sectional area and shape per axial slice and per level,
after SCT's ``sct_process_segmentation`` (same definitions and numbers:
:mod:`msseg.morphometry`), and the lesion measures of ``sct_analyze_lesion``
(:mod:`msseg.lesion_measures`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from msseg.cli.common import check_outputs, print_table
from msseg.errors import MssegError
from msseg.progress import progress

DESCRIPTION = """\
``msseg morphometry``: cord cross-sectional area and shape per axial slice and per level,
after SCT's ``sct_process_segmentation`` (same definitions and numbers:
:mod:`msseg.morphometry`), and the lesion measures of ``sct_analyze_lesion``
(:mod:`msseg.lesion_measures`).

``-s`` takes cord masks (binary or soft, any orientation) or folders of them (files named like
a cord mask: ``*_seg-manual``, ``*_label-SC_seg``…). By default one row per mask: the mean and
standard deviation of every measure over the slices holding cord and the summed length, as
``sct_process_segmentation`` without ``-perslice``; ``--per-slice``: one row per slice (RPI
index, inferior first); ``--per-level``: one row per mask and vertebral level (or spinal level
with ``--spinal``), as ``-perlevel 1``, from a level map per mask (``--levels``: a dense map
such as ``sct_label_vertebrae``'s ``*_seg_labeled``, or disc labels; ``--discs``: disc labels
only; on the mask's grid).
``--vert 2:5`` keeps those levels. Every row has ``scan`` (the mask's name), ``mask`` (its
path) and ``case`` (``scan``, ``scan:level`` or ``scan:slice``), so ``msseg stats`` can
compare two such tables (``--metric mean_area``). ``--plot`` draws CSA per level across the
masks. ``--pmj PMJ_LABEL`` adds each slice's distance from the pontomedullary junction
along the cord (``--per-slice``), or with ``--pmj-distance 64 --pmj-extent 20`` measures the
20 mm of cord centred 64 mm below it, as SCT's ``-pmj``. ``--normalize sex 0 brain-volume
960606`` adds ``mean_area_normalized`` (SCT's ``-normalize`` model). Angle correction (the
slice projected onto the plane across the cord, from the mask's own smoothed centerline) is on
unless ``--no-angle-correction``.

``--lesion`` takes one binary lesion mask per cord mask (same order, same grid) and writes
``OUT_lesions.csv``: msseg's lesion table with SCT's measures (length, width, damage ratio,
tissue bridges…) per lesion; lesions outside the cord are counted, and their cord measures
left empty. Nothing is written unless every input was read.
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("morphometry",
                       help="cord CSA and shape per slice and level, lesion measures (as SCT)",
                       description=DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-s", "--seg", type=Path, nargs="+", required=True,
                   help="cord masks, or folders of them")
    p.add_argument("-o", "--output", type=Path, required=True, help="CSV file to write")
    rows = p.add_mutually_exclusive_group()
    rows.add_argument("--per-slice", action="store_true", help="one row per slice")
    rows.add_argument("--per-level", action="store_true",
                      help="one row per level (needs --levels)")
    maps = p.add_mutually_exclusive_group()
    maps.add_argument("--levels", type=Path, nargs="+", metavar="MAP",
                      help="level map (dense or disc labels) per mask, in the masks' order")
    maps.add_argument("--discs", type=Path, nargs="+", metavar="LABELS",
                      help="disc labels (one voxel per disc) per mask, in the masks' order")
    p.add_argument("--spinal", action="store_true",
                   help="spinal levels (from the vertebral ones, through PAM50)")
    p.add_argument("--vert", metavar="A:B", help="keep levels A to B (e.g. 2:5)")
    p.add_argument("--pmj", type=Path, nargs="+", metavar="LABEL",
                   help="pontomedullary junction label per mask: distance_pmj_mm per slice "
                   "(--per-slice), or the slices at --pmj-distance")
    p.add_argument("--pmj-distance", type=float, metavar="MM",
                   help="measure the slices centred this far below the PMJ (with --pmj)")
    p.add_argument("--pmj-extent", type=float, default=20.0, metavar="MM",
                   help="length of cord measured around --pmj-distance (default 20 mm)")
    p.add_argument("--lesion", type=Path, nargs="+", metavar="MASK",
                   help="lesion mask per cord mask: writes OUT_lesions.csv")
    p.add_argument("--plot", type=Path, metavar="PNG", help="CSA per level (with --per-level)")
    p.add_argument("--normalize", nargs="+", metavar="PREDICTOR VALUE",
                   help="add mean_area_normalized, SCT's UK Biobank model: sex 0|1 "
                   "brain-volume MM3 [thalamus-volume MM3] (one subject: one mask)")
    p.add_argument("--no-angle-correction", dest="angle_correction", action="store_false",
                   help="measure the axial slices as acquired")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from msseg import io

    masks = _masks(args.seg)
    levels = _paired(args.levels or args.discs, masks, "--discs" if args.discs else "--levels")
    lesions = _paired(args.lesion, masks, "--lesion")
    pmjs = _paired(args.pmj, masks, "--pmj")
    _check_options(args, levels, pmjs)
    only = _level_range(args.vert)
    subject = _subject(args.normalize, masks)
    lesion_csv = args.output.with_name(args.output.name.removesuffix(".csv") + "_lesions.csv")
    check_outputs([args.output, args.plot, lesion_csv if lesions else None], args.overwrite,
                  inputs=masks + levels + lesions + pmjs, suffixes=(".csv", ".png"))
    rows, lesion_rows = [], []   # written after every input was read: a bad one leaves nothing
    for i, path in enumerate(progress(masks, "morphometry", min_items=2)):
        mask = _checked(io.load(path), path)
        level_map = _level_map(levels[i], bool(args.discs)) if levels else None
        pmj = io.load(pmjs[i]) if pmjs else None
        rows.append(_rows(args, _scan(path), mask, level_map, only, pmj).assign(mask=str(path)))
        if lesions:
            lesion_rows.append(_lesion_rows(_scan(path), mask, lesions[i]))
    out = _ordered(rows)
    if subject is not None and "mean_area" in out.columns:
        from msseg.morphometry import normalised_csa

        out["mean_area_normalized"] = [normalised_csa(a, subject) for a in out["mean_area"]]
    io.write_csv(out, args.output)
    if lesions:
        _write_lesions(lesion_rows, lesion_csv)
    if args.plot is not None:
        from msseg.report.morphometry import csa_per_level

        csa_per_level(out, args.plot)
    _print(args, out)
    print(f"wrote {args.output} ({len(out)} rows)")
    return 0


def _check_options(args: argparse.Namespace, levels: list[Path], pmjs: list[Path]) -> None:
    if (args.per_level or args.spinal or args.vert) and not levels:
        raise MssegError("--per-level, --spinal and --vert need a level map per mask "
                         "(--levels or --discs)")
    if args.pmj_distance is not None and not pmjs:
        raise MssegError("--pmj-distance needs a PMJ label per mask (--pmj)")
    if pmjs and args.pmj_distance is None and not args.per_slice:
        raise MssegError("--pmj gives distances per slice (--per-slice) or selects the "
                         "slices at --pmj-distance MM")
    if pmjs and args.per_level:
        raise MssegError("--pmj and --per-level select slices two ways: choose one")
    if args.pmj_extent <= 0:
        raise MssegError(f"--pmj-extent {args.pmj_extent:g}: must be positive")
    if args.plot is not None and not args.per_level:
        raise MssegError("--plot draws CSA per level: add --per-level")


def _subject(words: list[str] | None, masks: list[Path]) -> dict[str, float] | None:
    """``--normalize sex 0 brain-volume 960606``: the subject's predictors, checked."""
    if not words:
        return None
    if len(masks) != 1:
        raise MssegError("--normalize describes one subject: give one cord mask")
    if len(words) % 2:
        raise MssegError("--normalize takes pairs: PREDICTOR VALUE …")
    try:
        subject = {name: float(value) for name, value in zip(words[::2], words[1::2],
                                                              strict=True)}
    except ValueError:
        raise MssegError(f"--normalize {' '.join(words)}: values must be numbers") from None
    from msseg.morphometry import normalised_csa

    normalised_csa(0.0, subject)             # the model exists and sex is 0 or 1
    return subject


def _level_map(path: Path, discs: bool):
    """A level map; with ``--discs``, refused unless it holds point labels."""
    import numpy as np

    from msseg import io
    from msseg.levels import is_point_map

    image = io.load(path)
    if discs and not is_point_map(np.rint(image.data).astype(np.int64)):
        raise MssegError(f"{path}: not disc labels (a value labels more than 27 voxels: a "
                         "dense level map? give it with --levels)")
    return image


def _level_range(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        first, _, last = text.partition(":")
        low, high = int(first), int(last or first)
    except ValueError:
        raise MssegError(f"--vert {text}: give a level or a range of levels, e.g. 2:5") from None
    if low < 1 or high < low:
        raise MssegError(f"--vert {text}: levels count from 1 (C1), first ≤ last")
    return list(range(low, high + 1))


def _rows(args: argparse.Namespace, scan: str, mask, level_map, only, pmj=None):
    import pandas as pd

    from msseg.morphometry import (
        aggregate,
        cord_morphometry,
        per_level,
        pmj_distances,
        pmj_slices,
        with_levels,
    )

    table = cord_morphometry(mask, args.angle_correction)
    if pmj is not None:
        distances = pmj_distances(mask, pmj)
        table = table.assign(distance_pmj_mm=[distances.get(int(k), float("nan"))
                                              for k in table["slice"]])
        if args.pmj_distance is not None:
            chosen = pmj_slices(distances, args.pmj_distance, args.pmj_extent)
            table = table[table["slice"].isin(chosen)].drop(columns="distance_pmj_mm")
            if not args.per_slice:
                return pd.DataFrame([{"scan": scan, "case": scan,
                                      "distance_pmj_mm": args.pmj_distance,
                                      **aggregate(table)}])
    if level_map is not None:
        table = with_levels(table, mask, level_map, spinal=args.spinal)
        by = "spinal_level" if args.spinal else "vert_level"
        if only is not None:
            table = table[table[by].isin(only)]
    if args.per_level:
        table = per_level(table, by=by, only=only)
        return table.assign(scan=scan, case=[f"{scan}:{v}" for v in table.get("level", [])])
    if args.per_slice:
        return table.assign(scan=scan, case=[f"{scan}:{k}" for k in table["slice"]])
    return pd.DataFrame([{"scan": scan, "case": scan, **aggregate(table)}])


def _ordered(rows):
    import pandas as pd

    out = pd.concat(rows, ignore_index=True)
    first = [c for c in ("scan", "case", "mask", "level") if c in out.columns]
    return out[[*first, *[c for c in out.columns if c not in first]]]


def _lesion_rows(scan: str, cord, path: Path):
    import numpy as np

    from msseg import io
    from msseg.evaluation.engine import is_binary
    from msseg.image import same_grid
    from msseg.lesion_table import lesion_table

    lesion = io.load(path)
    if not is_binary(lesion.data):
        values = np.unique(lesion.data)
        raise MssegError(f"{path}: a lesion mask must be binary (values {values[:5].tolist()}"
                         f"…); threshold a probability map first")
    if not same_grid(cord, lesion):
        raise MssegError(f"{path}: not on the grid of its cord mask")
    table = lesion_table(lesion, cord=cord)
    return table.assign(scan=scan)


def _write_lesions(tables, path: Path) -> None:
    import pandas as pd

    from msseg import io

    out = pd.concat(tables, ignore_index=True)
    out = out[["scan", *[c for c in out.columns if c != "scan"]]]
    io.write_csv(out, path)
    outside = int((out["volume_in_cord_mm3"] == 0).sum()) if len(out) else 0
    note = f"; {outside} outside the cord (no cord measures)" if outside else ""
    print(f"wrote {path} ({len(out)} lesions{note})")


def _print(args: argparse.Namespace, out) -> None:
    from pathlib import Path as _Path

    if args.per_slice or not len(out):
        return
    columns = ["scan", *(["level"] if args.per_level else []), "slices", "mean_area",
               "std_area", "mean_diameter_AP", "mean_diameter_RL", "sum_length"]
    shown = out.assign(scan=[_Path(s).name for s in out["scan"]])
    print_table(shown[[c for c in columns if c in shown.columns]], "msseg morphometry (mm², mm)")


def _scan(path: Path) -> str:
    from msseg import io

    return io.strip_nifti_suffix(path.name)


def _paired(paths: list[Path] | None, masks: list[Path], flag: str) -> list[Path]:
    """One file per mask, in the masks' order (one file for one mask)."""
    if not paths:
        return []
    if len(paths) != len(masks):
        raise MssegError(f"{flag}: give one file per cord mask ({len(paths)} for "
                         f"{len(masks)} masks)")
    for path in paths:
        if not path.is_file():
            raise MssegError(f"{path}: no such file")
    return list(paths)


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
