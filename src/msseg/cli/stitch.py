"""``msseg stitch``: chunk acquisitions (cervical / thoracic / lumbar) into one whole-spine image.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from msseg import __version__, io
from msseg.cli.common import check_outputs
from msseg.errors import MssegError
from msseg.progress import progress

INTERP = {"cubic": 3, "linear": 1}
CHUNK = re.compile(r"_chunk-[A-Za-z0-9]+")

DESCRIPTION = """\
``msseg stitch``: chunk acquisitions (cervical / thoracic / lumbar) into one whole-spine image.

    msseg stitch CHUNK CHUNK [CHUNK…] -o OUT.nii.gz [--labels LABEL…] [--min-spacing MM]
    msseg stitch BIDS_OR_FOLDER -o OUTDIR

The published algorithm (Graf et al.; no registration): the smallest box holding every chunk's
corners over the chunks' rotations, the finest spacing per axis, each chunk resampled onto it
(cubic, or ``--interp linear``) and ramp-blended in overlaps (:mod:`msseg.preprocess.stitch`).
Label maps (``--labels``: masks named after their chunk, e.g. ``X_chunk-1_T2w_label-SC_seg``)
are stitched with the same geometry by per-label majority, written as ``OUT`` + the same suffix.
A folder is searched for ``_chunk-N`` images (BIDS or plain), grouped per subject / session,
and each group's image and masks are written to OUTDIR under BIDS-derivative names without the
chunk entity (``sub-X/[ses-Y/]anat/sub-X_[ses-Y_]T2w.nii.gz``, ``…_label-SC_seg.nii.gz``…).
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stitch", help="stitch chunk acquisitions into one image",
                       description=DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", type=Path, help="chunk images, or one folder")
    p.add_argument("-o", "--output", type=Path, required=True,
                   help="output image (chunks) or folder (folder input)")
    p.add_argument("--labels", nargs="+", type=Path, default=[],
                   help="label maps of the chunks (named <chunk stem><suffix>)")
    p.add_argument("--min-spacing", type=float, help="no output voxel finer than this (mm)")
    p.add_argument("--interp", choices=tuple(INTERP), default="cubic")
    p.add_argument("--force", action="store_true",
                   help="stitch chunks that neither overlap nor lie near each other")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if len(args.inputs) == 1 and args.inputs[0].is_dir():
        return run_folder(args)
    if len(args.inputs) < 2:
        raise MssegError("give at least two chunk images, or one folder")
    if not io.is_nifti(args.output):
        raise MssegError(f"{args.output}: output must be a .nii or .nii.gz file")
    groups = pair_labels(args.inputs, args.labels)
    outputs = {suffix: label_output(args.output, suffix) for suffix in groups}
    check_outputs([args.output, *outputs.values()], args.overwrite,
                  inputs=[*args.inputs, *args.labels])
    stitch_group(args.inputs, groups, args.output, outputs, args)
    return 0


def pair_labels(chunks: list[Path], labels: list[Path]) -> dict[str, list[Path]]:
    """Label files grouped by suffix, one per chunk in chunk order: ``X_chunk-1_T2w`` +
    ``_label-SC_seg`` (or, when names do not match, in the order given, suffix ``_labels``)."""
    stems = [io.strip_nifti_suffix(c.name) for c in chunks]
    groups: dict[str, dict[int, Path]] = {}
    unmatched = []
    for label in labels:
        name = io.strip_nifti_suffix(label.name)
        owners = [i for i, s in enumerate(stems) if name.startswith(s) and name != s]
        if not owners:
            unmatched.append(label)
            continue
        i = max(owners, key=lambda k: len(stems[k]))
        groups.setdefault(name[len(stems[i]):], {})[i] = label
    if unmatched:
        if groups or len(unmatched) != len(chunks):
            raise MssegError(f"{unmatched[0]}: not named after a chunk (<chunk stem>_suffix) "
                             "and not one label map per chunk in order")
        return {"_labels": unmatched}
    for suffix, found in groups.items():
        missing = [stems[i] for i in range(len(chunks)) if i not in found]
        if missing:
            raise MssegError(f"label maps '{suffix}': none for chunk {missing[0]}")
    return {suffix: [found[i] for i in range(len(chunks))] for suffix, found in groups.items()}


def label_output(output: Path, suffix: str) -> Path:
    return output.with_name(io.strip_nifti_suffix(output.name) + suffix + ".nii.gz")


def stitch_group(chunks: list[Path], labels: dict[str, list[Path]], output: Path,
                 outputs: dict[str, Path], args) -> None:
    from msseg.preprocess.stitch import stitch

    images = [io.load(c) for c in chunks]
    maps = {suffix: [io.load(p) for p in paths] for suffix, paths in labels.items()}
    image, stitched_labels, report = stitch(
        images, [str(c) for c in chunks], maps, order=INTERP[args.interp],
        min_spacing=args.min_spacing, force=args.force,
        progress=lambda items: progress(items, f"stitching {output.name}", 8))
    for i in report.dropped:
        print(f"warning: {chunks[i]} lies entirely inside another chunk: dropped",
              file=sys.stderr)
    for gap in report.gaps_mm:
        print(f"warning: {output.name}: {gap:.1f} mm between chunks is not covered (left 0)",
              file=sys.stderr)
    like = images[report.rotation_from]
    io.save_on_grid(image.data, image.affine, output, like, images[0].data.dtype
                    if images[0].data.dtype.kind == "f" else "float32")
    for suffix, label in stitched_labels.items():
        io.save_on_grid(label.data, label.affine, outputs[suffix], like)
    print(f"{output}: {image.shape} at {tuple(round(s, 3) for s in image.spacing)} mm from "
          f"{len(report.kept)} chunks" + "".join(f"; {outputs[s]}" for s in stitched_labels))


def run_folder(args: argparse.Namespace) -> int:
    from msseg.data.index import scan

    root = args.inputs[0]
    if args.labels:
        raise MssegError("--labels is for chunk files; a folder's masks are found by name")
    groups: dict[tuple, list] = {}
    for record in scan(root):
        if record.chunk is None:
            continue
        stem = CHUNK.sub("", io.strip_nifti_suffix(Path(record.image).name))
        groups.setdefault((record.patient, record.session, stem), []).append(record)
    groups = {k: sorted(v, key=lambda r: r.chunk) for k, v in groups.items() if len(v) > 1}
    if not groups:
        raise MssegError(f"{root}: no subject has two or more _chunk-N images")
    plans = []
    for (patient, session, stem), records in sorted(groups.items(), key=lambda kv: kv[0][2]):
        folder = args.output / patient / (session or "") / "anat"
        masks = {suffix: [Path(getattr(r, kind)) for r in records]
                 for suffix, kind in (("_label-SC_seg", "cord"), ("_label-lesion_seg", "lesion"))
                 if all(getattr(r, kind) for r in records)}
        out = folder / f"{stem}.nii.gz"
        plans.append(([Path(r.image) for r in records], masks, out,
                      {s: label_output(out, s) for s in masks}))
    check_outputs([p for plan in plans for p in (plan[2], *plan[3].values())], args.overwrite)
    for chunks, masks, out, outputs in plans:
        stitch_group(chunks, masks, out, outputs, args)
    write_description(args.output)
    return 0


def write_description(root: Path) -> None:
    """``dataset_description.json`` of the derivative dataset (kept if present)."""
    path = root / "dataset_description.json"
    if path.exists():
        return
    path.write_text(json.dumps({
        "Name": "msseg stitch", "BIDSVersion": "1.9.0", "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "msseg", "Version": __version__,
                         "Description": "chunks stitched with ramp blending (msseg stitch)"}]},
        indent=1))
