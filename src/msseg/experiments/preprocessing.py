"""The axial-T2w paper's preprocessing design: chunks vs stitched × native vs straightened × 2D
vs 3D, scored in native space on chunks stacked per patient.

Design notes: docs/explanation/design-notes.md#mssegexperimentspreprocessing.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from msseg import io
from msseg.data.index import Record, assign_folds, save_index
from msseg.errors import MssegError
from msseg.evaluation.engine import EvalOptions, evaluate_masks
from msseg.evaluation.stacking import stack_chunks
from msseg.evaluation.voxel import dice
from msseg.experiments.engine import Run, Scored
from msseg.image import Image
from msseg.inference.ensemble import EnsembleSegmenter
from msseg.inference.options import SegmentOptions
from msseg.inference.segment import make_segmenter
from msseg.preprocess.resample import resample_to_grid
from msseg.training.config import TrainConfig

VARIANTS = ("chunks-native", "stitched-native", "chunks-straightened", "stitched-straightened")
METRICS = ("dice", "nsd", "lesion_ppv", "lesion_sensitivity", "lesion_f1", "n_ref_lesions",
           "n_pred_lesions")


def session_key(record: Record) -> str:
    return record.patient + (f"_{record.session}" if record.session else "")


def sessions(records: Sequence[Record]) -> dict[str, list[Record]]:
    """Chunk records per session, chunk 1 (most cranial) first."""
    out: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        out[session_key(record)].append(record)
    return {k: sorted(v, key=lambda r: r.chunk or 0) for k, v in sorted(out.items())}


def check_chunks(records: Sequence[Record]) -> None:
    missing = [r.image for r in records if r.cord is None or r.lesion is None]
    if missing:
        raise MssegError(f"{missing[0]}: the preprocessing design needs cord and lesion masks "
                         f"for every chunk ({len(missing)} images lack one)")
    if not any(r.chunk for r in records):
        raise MssegError("no _chunk-N image in the dataset: the design compares chunks with "
                         "stitched sessions")


def build_stitched(records: Sequence[Record], root: Path, wrap=lambda items: items
                   ) -> list[Record]:
    """Every session's chunks, cord and lesion masks stitched under ``root`` (BIDS names
    without the chunk entity), each session once: one already written is reused."""
    from msseg.preprocess.stitch import stitch

    built = []
    for chunks in wrap(list(sessions(records).values())):
        stem = io.strip_nifti_suffix(Path(chunks[0].image).name)
        stem = "_".join(p for p in stem.split("_") if not p.startswith("chunk-"))
        folder = Path(chunks[0].patient) / (chunks[0].session or "") / "anat"
        labels = root / "derivatives" / "labels" / folder
        paths = {"image": root / folder / f"{stem}.nii.gz",
                 "cord": labels / f"{stem}_label-SC_seg.nii.gz",
                 "lesion": labels / f"{stem}_label-lesion_seg.nii.gz"}
        if not all(p.is_file() for p in paths.values()):
            images = [io.load(r.image) for r in chunks]
            maps_in = {"cord": [io.load(r.cord) for r in chunks],
                       "lesion": [io.load(r.lesion) for r in chunks]}
            image, maps, _ = stitch(images, [r.image for r in chunks], maps_in, order=3)
            io.save(maps["cord"], paths["cord"])
            io.save(maps["lesion"], paths["lesion"])
            io.save(image, paths["image"])        # last: its presence marks a finished session
        header = io.load_header(paths["image"])
        orientation = "".join(nib.aff2axcodes(header.get_best_affine()))
        built.append(Record(**{**asdict(chunks[0]), "image": str(paths["image"]),
                               "orientation": orientation,
                               "cord": str(paths["cord"]), "lesion": str(paths["lesion"]),
                               "spacing": tuple(float(z) for z in header.get_zooms()[:3]),
                               "shape": tuple(int(n) for n in header.get_data_shape()[:3]),
                               "chunk": None, "raters": ()}))
    save_index(built, root / "dataset.json")
    return built


def split_sites(records: Sequence[Record], train_sites: Sequence[str] | None,
                test_sites: Sequence[str] | None) -> tuple[list[Record], list[Record]]:
    """(training records, test-site records): the test sites' sessions held out; with
    ``train_sites``, training on those sites only."""
    if not test_sites:
        if train_sites:
            raise MssegError("--train-sites needs --test-sites (the sites to test on)")
        return list(records), []
    known = {r.site for r in records}
    asked = set(test_sites) | set(train_sites or ())
    if asked - known:
        raise MssegError(f"site(s) {', '.join(sorted(asked - known))} not in the dataset "
                         f"(its sites: {', '.join(sorted(known))})")
    if set(test_sites) & set(train_sites or ()):
        raise MssegError("a site cannot be both a training and a test site")
    test = [r for r in records if r.site in set(test_sites)]
    train = [r for r in records if r.site not in set(test_sites)
             and (not train_sites or r.site in set(train_sites))]
    if not train:
        raise MssegError("no training session left once the test sites are held out")
    return train, test


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(text).name)


def on_chunks(mask: Image, chunks: Sequence[Image]) -> list[np.ndarray]:
    """A mask of the stitched grid on every chunk's grid (linear, ≥ 0.5; 0 outside)."""
    values = Image(np.asarray(mask.data, np.float32), mask.affine)
    return [resample_to_grid(values, c.shape, c.affine, order=1).data >= 0.5 for c in chunks]


def stacked_scores(preds: Sequence[np.ndarray], refs: Sequence[Image], chunk_ids: Sequence[int],
                   options: EvalOptions) -> tuple[dict, list[dict]]:
    """Metrics of a session's chunk predictions stacked against its stacked chunk references."""
    pred = stack_chunks([r.with_data(p.astype(np.uint8)) for p, r in
                         zip(preds, refs, strict=True)], chunk_ids)
    ref = stack_chunks([r.with_data(r.data > 0) for r in refs], chunk_ids)
    return evaluate_masks(pred.image.data, ref.image.data, ref.image.spacing, options,
                          ref.slice_chunk)


class Preprocessing:
    """The design (see module). ``records``: the chunk index; ``folds``: patient-level folds
    (None: the index's own). ``whole_context``: every variant also gets a 3D model whose patch
    covers the whole S–I extent. ``test_sites``: those sites' sessions are held out of
    training and cross-validation; each variant × dims is tested on them as the ensemble of
    its fold models, and ``baseline`` (a task or model folder) on the same sessions;
    ``train_sites``: train on those sites only."""

    table = "results.csv"

    def __init__(self, records: Sequence[Record], base: TrainConfig,
                 variants: Sequence[str] = VARIANTS, dims: Sequence[int] = (2, 3),
                 folds: int | None = 3, seed: int = 0,
                 options: SegmentOptions | None = None, eval_options: EvalOptions | None = None,
                 wrap=lambda items: items, whole_context: bool = False,
                 train_sites: Sequence[str] | None = None,
                 test_sites: Sequence[str] | None = None, baseline: str | None = None):
        unknown = [v for v in variants if v not in VARIANTS]
        if unknown:
            raise MssegError(f"--variants: unknown {', '.join(unknown)} (known: "
                             f"{', '.join(VARIANTS)})")
        if not set(dims) <= {2, 3}:
            raise MssegError(f"--dims {','.join(map(str, dims))}: 2 and/or 3")
        check_chunks(records)
        train, test = split_sites(records, train_sites, test_sites)
        if baseline and not test:
            raise MssegError("--baseline is scored on the test sites: give --test-sites")
        self.records = list(assign_folds(train, folds, seed) if folds else train)
        if any(r.fold is None for r in self.records):
            raise MssegError("the dataset index has no folds: give --folds K")
        self.test_records = list(test)
        self.base, self.variants = base, list(variants)
        self.models = [(d, "patch") for d in dims] + ([(3, "whole")] if whole_context else [])
        self.baseline = baseline
        self.options = options or SegmentOptions()
        self.eval_options = eval_options or EvalOptions()
        self.wrap = wrap
        self.chunks = sessions(self.records)
        self.test_chunks = sessions(self.test_records)
        self.stitched: dict[str, Record] = {}
        self._segmenter: tuple[str, object] | None = None
        self._fold_runs: dict[str, list[Run]] = {}

    # ------------------------------------------------------------------------- the runs
    def runs(self, out: Path) -> list[Run]:
        chunk_index = save_index(self.records, out / "variants" / "chunks" / "dataset.json")
        stitched_index = None
        if any(v.startswith("stitched") for v in self.variants):
            built = build_stitched([*self.records, *self.test_records],
                                   out / "variants" / "stitched", self.wrap)
            self.stitched = {session_key(r): r for r in built}
            folds = {key: chunks[0].fold for key, chunks in self.chunks.items()}
            train = [Record(**{**asdict(r), "fold": folds[session_key(r)]}) for r in built
                     if session_key(r) in folds]
            stitched_index = save_index(train, out / "variants" / "stitched" / "train.json")
        folds = sorted({r.fold for r in self.records})
        runs = []
        for variant in self.variants:
            index = chunk_index if variant.startswith("chunks") else stitched_index
            for dims, context in self.models:
                tag = f"{dims}d" + ("-whole" if context == "whole" else "")
                meta = {"variant": variant, "dims": dims, "context": context}
                fold_runs = [Run(f"{variant}/{tag}/fold{fold}",
                                 self.config(variant, dims, index, fold, context), "last",
                                 {**meta, "fold": fold}) for fold in folds]
                runs += fold_runs
                if self.test_chunks:
                    name = f"{variant}/{tag}/ensemble"
                    self._fold_runs[name] = fold_runs
                    runs.append(Run(name, None, "last", {**meta, "fold": "ensemble"}))
        if self.baseline:
            runs.append(Run(f"baseline/{_slug(self.baseline)}", None, "last",
                            {"variant": f"baseline:{Path(self.baseline).name}",
                             "dims": self._baseline().plan.dims, "context": "patch",
                             "fold": "test"}))
        return runs

    def config(self, variant: str, dims: int, index: Path, fold: int,
               context: str = "patch") -> TrainConfig:
        """The base config with only the dataset, dims, frame and validation fold changed
        (patch and spacing planned afresh when the base's do not fit ``dims``; the whole
        S–I extent with ``context = "whole"``)."""
        changes: dict = {"dataset": str(index), "dims": dims, "fold": fold,
                         "frame": "straightened" if variant.endswith("straightened")
                         else "image"}
        if self.base.patch_size is not None and (len(self.base.patch_size) != dims
                                                 or context == "whole"):
            changes["patch_size"] = None
        if self.base.target_spacing is not None and len(self.base.target_spacing) != dims:
            changes["target_spacing"] = None
        if context == "whole":
            changes["extra"] = {**self.base.extra, "whole_context": True}
        config = self.base.replace(**changes)
        config.validate()
        return config

    def cases(self, run: Run) -> list[str]:
        if run.config is None:
            return list(self.test_chunks)
        return [key for key, chunks in self.chunks.items() if chunks[0].fold == run.meta["fold"]]

    def load_model(self, run: Run, out: Path):
        """A fold ensemble's members (trained), or the baseline model."""
        from msseg.experiments.engine import trained_model

        if run.name in self._fold_runs:
            return [trained_model(r, out) for r in self._fold_runs[run.name]]
        return self._baseline()

    def _baseline(self):
        from msseg.models.registry import find_model, open_model

        path = Path(self.baseline)
        return open_model(path) if path.is_dir() else find_model(self.baseline)

    # ------------------------------------------------------------------------- scoring
    def segmenter(self, run: Run, model):
        if self._segmenter is None or self._segmenter[0] != run.name:
            if isinstance(model, list):
                members = [make_segmenter(m, self.options) for m in model]
                made = EnsembleSegmenter(members, self.options)
            else:
                made = make_segmenter(model, self.options)
            self._segmenter = (run.name, made)
        return self._segmenter[1]

    def score(self, run: Run, model, case: str) -> Scored:
        start = time.perf_counter()
        segmenter = self.segmenter(run, model)
        chunks = self.chunks.get(case) or self.test_chunks[case]
        refs = [io.load(r.lesion) for r in chunks]
        cords = [io.load(r.cord) for r in chunks]
        ids = [r.chunk or 1 for r in chunks]
        rows, lesions = [], []
        if not run.meta["variant"].startswith("stitched"):   # chunks, or the baseline
            results = [segmenter.segment(io.load(r.image), r.image) for r in chunks]
            lesion = [res.lesion.data > 0 for res in results]
            cord = [res.cord.data > 0 for res in results]
        else:
            record = self.stitched[case]
            result = segmenter.segment(io.load(record.image), record.image)
            ref = io.load(record.lesion)
            metrics, per_lesion = evaluate_masks(result.lesion.data > 0, ref.data > 0,
                                                 ref.spacing, self.eval_options)
            cord_ref = io.load(record.cord).data > 0
            rows.append(self._row("stitched", metrics,
                                  dice(result.cord.data > 0, cord_ref)))
            lesions += [{"reference": "stitched", **row} for row in per_lesion]
            lesion = on_chunks(result.lesion, refs)
            cord = on_chunks(result.cord, refs)
        metrics, per_lesion = stacked_scores(lesion, refs, ids, self.eval_options)
        cord_dice = dice(np.concatenate([c.ravel() for c in cord]),
                         np.concatenate([c.data.ravel() > 0 for c in cords]))
        rows.append(self._row("chunks", metrics, cord_dice))
        lesions += [{"reference": "chunks", **row} for row in per_lesion]
        seconds = time.perf_counter() - start
        for row in rows:
            row["site"] = chunks[0].site
            row["seconds"] = seconds
        return Scored(rows, lesions)

    @staticmethod
    def _row(reference: str, metrics: dict, cord_dice: float) -> dict:
        row = {"reference": reference, **{k: metrics[k] for k in METRICS}}
        row["count_error"] = abs(metrics["n_ref_lesions"] - metrics["n_pred_lesions"])
        row["cord_dice"] = cord_dice
        return row

    # ------------------------------------------------------------------------- summary
    def summarize(self, results: pd.DataFrame, lesions: pd.DataFrame, out: Path
                  ) -> dict[str, pd.DataFrame]:
        from msseg.experiments import analysis

        return analysis.summarize(results, lesions, out)
