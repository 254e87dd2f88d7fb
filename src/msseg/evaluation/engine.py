"""Evaluation of (prediction, reference) pairs: files, folders or per-patient chunk stacks.

Case ids: the file name without ``.nii``/``.nii.gz`` and without one trailing suffix from
:data:`CASE_SUFFIXES` (longest first), so ``sub-01_T2w_lesion-manual.nii.gz`` (reference) and
``sub-01_T2w_label-lesion_seg.nii.gz`` (prediction) are both case ``sub-01_T2w``.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cc3d
import numpy as np
import pandas as pd

from msseg import bids, io
from msseg.errors import MssegError
from msseg.evaluation.lesion_matching import (
    LesionMatch,
    lesion_scores,
    match_lesions,
    size_bin_index,
    size_bin_labels,
)
from msseg.evaluation.metrics import COLUMNS as METRIC_REGISTRY_COLUMNS
from msseg.evaluation.stacking import split_chunk, stack_chunks
from msseg.evaluation.voxel import (
    SurfaceDistances,
    dice,
    relative_volume_error,
)
from msseg.image import Image, union_bounding_box

#: Suffixes removed from file names to get the case id (one, the longest that matches).
CASE_SUFFIXES = (
    "_label-lesion_seg", "_label-SC_seg", "_label-lesion", "_lesion-manual", "_seg-manual",
    "_lesion_seg", "_lesionseg", "_sc_seg", "_lesion", "_pred", "_seg", "_mask", "_gt",
)

#: The metrics CSV's columns, in order: the registry's names (msseg.evaluation.metrics).
METRIC_COLUMNS = METRIC_REGISTRY_COLUMNS
LESION_COLUMNS = ("case", "kind", "lesion_id", "volume_mm3", "overlap_fraction",
                  "true_positive", "chunk")

#: Mask names per structure, to choose between a case's cord and lesion masks (``--structure``).
STRUCTURE_SUFFIXES = {
    "lesion": ("_label-lesion_seg", "_lesion-manual", "_lesion_seg", "_lesionseg", "_label-lesion",
               "_lesion"),
    "cord": ("_label-SC_seg", "_seg-manual", "_sc_seg", "_seg"),
}
STRUCTURES = tuple(STRUCTURE_SUFFIXES)

@dataclass(frozen=True)
class EvalOptions:
    """The settings of ``msseg evaluate`` (its options of the same names).

    Attributes:
        overlap: θ, the share of a reference lesion a prediction must overlap.
        nsd_tolerance_mm: τ of the normalised surface distance.
        connectivity: 6, 18 or 26, for lesions as connected components.
        matching: ``published`` (the papers' fork of MetricsReloaded) or ``symmetric``.
        label: score voxels equal to this value of a label map (None: > 0).
        size_bins_mm3: edges of the lesion-volume bins of the detection rates.
    """

    overlap: float = 0.1
    nsd_tolerance_mm: float = 1.0
    connectivity: int = 6
    matching: str = "published"
    label: int | None = None
    size_bins_mm3: tuple[float, ...] = (10.0, 50.0, 200.0)


@dataclass(frozen=True)
class CasePair:
    case: str
    pred: Path
    ref: Path


def case_id(path: str | os.PathLike) -> str:
    """The case of a mask file (BIDS derivative names read as their older equivalent:
    ``sub-01_label-SC_desc-T2w_mask`` is case ``sub-01_T2w``)."""
    name = bids.legacy_name(io.strip_nifti_suffix(Path(path).name))
    for suffix in sorted(CASE_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


# ----------------------------------------------------------------------------- metrics per case

def evaluate_masks(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float],
                   options: EvalOptions = EvalOptions(),
                   slice_chunk: np.ndarray | None = None) -> tuple[dict, list[dict]]:
    """Every metric of :data:`msseg.evaluation.metrics.REGISTRY` for one pair of masks.

    Args:
        pred: the predicted mask (boolean, any shape).
        ref: the reference mask (same shape).
        spacing: voxel size in mm per axis.
        options: lesion overlap θ, NSD tolerance, connectivity, matching rule.
        slice_chunk: per slice of the last axis, the chunk it came from (stacked chunks).

    Returns:
        The metrics (a dict in the registry's order) and one row per lesion (reference and
        predicted).
    """
    pred = np.asarray(pred, dtype=bool)
    ref = np.asarray(ref, dtype=bool)
    voxel_mm3 = float(np.prod(spacing))
    box = union_bounding_box([pred, ref], margin=1)
    if box is None:
        box = tuple(slice(0, 1) for _ in pred.shape)
    # one contiguous copy of the box: every pass below reads it sequentially
    pred, ref = np.ascontiguousarray(pred[box]), np.ascontiguousarray(ref[box])
    distances = SurfaceDistances.compute(pred, ref, spacing, cropped=True)
    match = match_lesions(pred, ref, options.overlap, options.connectivity, options.matching)
    metrics = {
        "dice": dice(pred, ref),
        "nsd": distances.nsd(options.nsd_tolerance_mm),
        "rve": relative_volume_error(pred, ref),
        "hd95_mm": distances.hd95(),
        "assd_mm": distances.assd(),
        "ref_volume_mm3": int(np.count_nonzero(ref)) * voxel_mm3,
        "pred_volume_mm3": int(np.count_nonzero(pred)) * voxel_mm3,
        **lesion_scores(match),
    }
    chunks = None if slice_chunk is None else slice_chunk[box[2]]
    return metrics, _lesion_rows(match, voxel_mm3, chunks)


def _lesion_rows(match: LesionMatch, voxel_mm3: float, slice_chunk: np.ndarray | None):
    rows = []
    for kind, labels, sizes, frac, tp in (
        ("ref", match.ref_labels, match.ref_sizes, match.ref_overlap, match.ref_tp),
        ("pred", match.pred_labels, match.pred_sizes, match.pred_overlap, match.pred_tp),
    ):
        chunk = _lesion_chunks(labels, sizes.size, slice_chunk)
        for i in range(sizes.size):
            rows.append({"kind": kind, "lesion_id": i + 1, "volume_mm3": sizes[i] * voxel_mm3,
                         "overlap_fraction": float(frac[i]), "true_positive": bool(tp[i]),
                         "chunk": chunk[i]})
    return rows


def _lesion_chunks(labels: np.ndarray, n: int, slice_chunk: np.ndarray | None) -> list:
    if slice_chunk is None or n == 0:
        return [None] * n
    centroids = cc3d.statistics(labels)["centroids"][1:n + 1]
    z = np.clip(np.round(centroids[:, 2]).astype(int), 0, slice_chunk.size - 1)
    return [int(c) for c in slice_chunk[z]]


# ------------------------------------------------------------------------------------ loading

def load_mask(path: Path, label: int | None) -> Image:
    """Load a mask as booleans: ``data == label`` with a label, else it must be binary 0/1."""
    image = io.load(path)
    data = image.data
    if label is not None:
        return image.with_data(data == label)
    if not is_binary(data):
        values = np.unique(data)
        shown = ", ".join(f"{v:g}" for v in values[:6]) + (" …" if values.size > 6 else "")
        raise MssegError(f"{path}: mask is not binary (values {shown}); choose one with --label")
    return image.with_data(data.astype(bool))


def is_binary(data: np.ndarray) -> bool:
    """All values 0 or 1 (cheap for integer types: a min/max pass instead of a sort)."""
    if data.dtype == bool:
        return True
    if np.issubdtype(data.dtype, np.integer):
        return bool(data.min() >= 0 and data.max() <= 1)
    return bool(((data == 0) | (data == 1)).all())


def check_same_grid(pred: Image, ref: Image, pred_path: Path, ref_path: Path) -> None:
    if pred.shape != ref.shape:
        raise MssegError(f"{pred_path}: shape {pred.shape} differs from reference {ref_path} "
                         f"shape {ref.shape}")
    if not np.allclose(pred.affine, ref.affine, atol=1e-3):
        fmt = lambda a: np.array2string(a[:3], precision=3, separator=",").replace("\n", "")  # noqa: E731
        raise MssegError(f"{pred_path}: affine {fmt(pred.affine)} differs from reference "
                         f"{ref_path} affine {fmt(ref.affine)}")


def find_pairs(pred: str | os.PathLike, ref: str | os.PathLike,
               structure: str = "lesion") -> list[CasePair]:
    """Pair prediction and reference files: two files, or two folders matched by case id.

    Args:
        pred: a predicted mask, or a folder of them.
        ref: a reference mask, or a folder of them.
        structure: ``lesion`` or ``cord``: which mask of a case to take from a folder that
            holds both (``msseg segment``'s output); soft maps (``*_probseg``) are never
            scored.

    Returns:
        One pair per case.

    Raises:
        MssegError: a path is missing, a file meets a folder, or no case pairs up.
    """
    if structure not in STRUCTURES:
        raise MssegError(f"--structure {structure!r}: choose one of {', '.join(STRUCTURES)}")
    pred, ref = Path(pred), Path(ref)
    for p in (pred, ref):
        io.check_exists(p)
    if pred.is_file() and ref.is_file():
        return [CasePair(case_id(ref), pred, ref)]
    if pred.is_dir() != ref.is_dir():
        raise MssegError(f"{pred} and {ref}: give two files or two folders")
    preds, refs = _index_folder(pred, structure), _index_folder(ref, structure)
    missing_pred = sorted(set(refs) - set(preds))
    missing_ref = sorted(set(preds) - set(refs))
    if missing_pred or missing_ref:
        parts = []
        if missing_pred:
            parts.append(f"no prediction for {', '.join(missing_pred)}")
        if missing_ref:
            parts.append(f"no reference for {', '.join(missing_ref)}")
        raise MssegError(f"{pred} vs {ref}: unmatched cases: {'; '.join(parts)}")
    return [CasePair(c, preds[c], refs[c]) for c in sorted(refs)]


def _index_folder(folder: Path, structure: str = "lesion") -> dict[str, Path]:
    files = [p for p in io.find_nifti(folder)
             if not bids.legacy_name(io.strip_nifti_suffix(p.name)).endswith("_probseg")]
    if not files:
        raise MssegError(f"{folder}: folder holds no NIfTI file")
    index: dict[str, Path] = {}
    for f in files:
        cid = case_id(f)
        if cid in index:
            chosen = _choose_structure(index[cid], f, structure)
            if chosen is None:
                raise MssegError(f"{f}: case id {cid!r} also used by {index[cid]}")
            index[cid] = chosen
        else:
            index[cid] = f
    return index


def _choose_structure(a: Path, b: Path, structure: str) -> Path | None:
    """Of two masks of one case, the one named for ``structure`` (None when not decidable)."""
    kinds = [_structure_of(p) for p in (a, b)]
    if sorted(k for k in kinds if k) != sorted(STRUCTURES):
        return None
    return a if kinds[0] == structure else b


def _structure_of(path: Path) -> str | None:
    stem = bids.legacy_name(io.strip_nifti_suffix(path.name))
    for structure, suffixes in STRUCTURE_SUFFIXES.items():
        if stem.endswith(suffixes):
            return structure
    return None


# ------------------------------------------------------------------------------------ cohorts

@dataclass(frozen=True)
class EvalResult:
    metrics: pd.DataFrame   # one row per case
    lesions: pd.DataFrame   # one row per reference lesion and per predicted component


def evaluate_pairs(pairs: Sequence[CasePair], options: EvalOptions = EvalOptions(),
                   stack_by_patient: bool = False,
                   wrap: Callable[[Iterable], Iterable] = lambda it: it) -> EvalResult:
    """Evaluate every case, or every patient's stack of chunks.

    Args:
        pairs: from :func:`find_pairs`.
        options: the metrics' settings.
        stack_by_patient: stack each patient's chunks before scoring (one row per patient).
        wrap: wraps the iteration (a progress bar).

    Returns:
        The per-case metrics and per-lesion rows.
    """
    groups = _group_by_patient(pairs) if stack_by_patient else [(p.case, [p]) for p in pairs]
    case_rows, lesion_rows = [], []
    for case, members in wrap(groups):
        metrics, lesions = _evaluate_group(members, options, stacked=stack_by_patient)
        case_rows.append({"case": case, **metrics})
        lesion_rows += [{"case": case, **row} for row in lesions]
    metrics_df = pd.DataFrame(case_rows, columns=["case", *METRIC_COLUMNS, *(
        ["n_chunks"] if stack_by_patient else [])])
    return EvalResult(metrics_df, pd.DataFrame(lesion_rows, columns=list(LESION_COLUMNS)))


def _group_by_patient(pairs: Sequence[CasePair]) -> list[tuple[str, list[CasePair]]]:
    groups: dict[str, list[CasePair]] = defaultdict(list)
    for pair in pairs:
        groups[split_chunk(pair.case)[0]].append(pair)
    return sorted(groups.items())


def _evaluate_group(members: list[CasePair], options: EvalOptions, stacked: bool):
    preds, refs = [], []
    for pair in members:
        pred, ref = load_mask(pair.pred, options.label), load_mask(pair.ref, options.label)
        check_same_grid(pred, ref, pair.pred, pair.ref)
        preds.append(pred)
        refs.append(ref)
    if not stacked:
        return evaluate_masks(preds[0].data, refs[0].data, refs[0].spacing, options)
    chunk_ids = [split_chunk(p.case)[1] for p in members]
    if len(members) > 1 and None in chunk_ids:
        names = ", ".join(p.case for p in members)
        raise MssegError(f"cases {names}: same patient but not all carry a _chunk-N entity")
    chunk_ids = [c or 1 for c in chunk_ids]
    pred_stack = stack_chunks(preds, chunk_ids)
    ref_stack = stack_chunks(refs, chunk_ids)
    metrics, rows = evaluate_masks(pred_stack.image.data, ref_stack.image.data,
                                   ref_stack.image.spacing, options, ref_stack.slice_chunk)
    return {**metrics, "n_chunks": len(members)}, rows


# ------------------------------------------------------------------------------------ summary

def summarize(result: EvalResult, options: EvalOptions = EvalOptions()) -> pd.DataFrame:
    """The cohort table of an evaluation.

    Args:
        result: from :func:`evaluate_pairs`.
        options: the size bins of the detection rates.

    Returns:
        Per metric: mean, standard deviation, median and n; then volume-wise specificity and the
        detection rate per lesion-size bin.
    """
    rows = []
    for col in METRIC_COLUMNS:
        values = pd.to_numeric(result.metrics[col], errors="coerce").dropna()
        rows.append({"metric": col, "mean": values.mean(), "std": values.std(ddof=1),
                     "median": values.median(), "n": int(values.size)})
    rows.append(_volume_wise_specificity(result.metrics))
    rows += _detection_rates(result, options)
    return pd.DataFrame(rows, columns=["metric", "mean", "std", "median", "n"])


def _volume_wise_specificity(metrics: pd.DataFrame) -> dict:
    """Fraction of reference-empty cases with no predicted lesion (NaN when there are none)."""
    empty = metrics[metrics["n_ref_lesions"] == 0]
    value = float((empty["n_pred_lesions"] == 0).mean()) if len(empty) else float("nan")
    return {"metric": "volume_wise_specificity", "mean": value, "std": np.nan,
            "median": np.nan, "n": int(len(empty))}


def _detection_rates(result: EvalResult, options: EvalOptions) -> list[dict]:
    ref = result.lesions[result.lesions["kind"] == "ref"].copy()
    labels = size_bin_labels(options.size_bins_mm3)
    bins = size_bin_index(ref["volume_mm3"].to_numpy(dtype=float), options.size_bins_mm3)
    rows = []
    for i, name in enumerate(labels):
        hit = ref["true_positive"].to_numpy(dtype=bool)[bins == i]
        rows.append(_rate_row(f"detection_rate_mm3{name}", hit))
    chunk = ref["chunk"].where(ref["chunk"].notna(), ref["case"].map(lambda c: split_chunk(c)[1]))
    for value in sorted({int(c) for c in chunk.dropna()}):
        hit = ref["true_positive"].to_numpy(dtype=bool)[(chunk == value).to_numpy()]
        rows.append(_rate_row(f"detection_rate_chunk-{value}", hit))
    return rows


def _rate_row(name: str, hits: np.ndarray) -> dict:
    value = float(hits.mean()) if hits.size else float("nan")
    return {"metric": name, "mean": value, "std": np.nan, "median": np.nan, "n": int(hits.size)}
