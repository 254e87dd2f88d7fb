"""Batches of scans: one at a time, in local processes (``jobs``) or on a Dask cluster.

Design notes: docs/explanation/design-notes.md#msseginferencebatch.
"""

from __future__ import annotations

import json
import os
import re
import time
import traceback
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from msseg import bids, io
from msseg.bids import is_mask_name
from msseg.errors import MssegError
from msseg.inference import records
from msseg.inference.finish import model_threshold, postprocess_config
from msseg.inference.options import SegmentOptions
from msseg.inference.segment import make_segmenter
from msseg.models.registry import open_model

BIDS_LABEL = {"cord": "SC", "lesion": "lesion"}
SUMMARY_COLUMNS = ("scan", "status", "n_lesions", "total_lesion_volume_mm3", "cord_volume_mm3",
                   "seconds", "error")


@dataclass(frozen=True)
class Job:
    image: Path        # as the user gave it (absolute, links not resolved: names follow it)
    outdir: Path
    model: Path
    options: SegmentOptions
    soft: bool
    qcdir: Path | None = None
    masks: tuple[str, ...] = ("cord", "lesion")   # the model's named outputs
    overwrite: bool = False                        # replace outputs made with other settings
    layout: str = "flat"                           # flat | bids (derivative names, subdir)
    subdir: str = ""                               # bids: sub-X/[ses-Y/]anat
    raw_root: Path | None = None                   # bids: the raw dataset (sidecar sources)
    task: str = ""                                 # the task as named (sidecars)
    levels: Path | None = None                     # level map of the image (lesion table)
    centerline: Path | None = None                 # SCT models: the -centerline file
    # QC figures of a scan, given by the caller (the CLI: msseg.report.qc.scan_figures):
    # figures(name, image, cord, lesion, qcdir); a module-level function, so a worker
    # process or a Dask worker receives it by reference
    figures: Callable | None = None
    morphometry: bool = False                      # also the cord's CSA per slice
    brain_mask: Path | None = None                 # brain models: strip the skull with it
    skull_strip: str = "auto"                      # brain models: auto | bet | off
    brain: bool = False                            # a brain model: writes the brain mask
    model_space: str = "native"                    # brain models: native | mni
    force: bool = False                            # brain models: skip the geometry checks
    locations: str = "off"                         # brain models: auto | mni | register | off

    @property
    def name(self) -> str:
        return io.strip_nifti_suffix(self.image.name)

    @property
    def soft_of(self) -> str:
        """The output whose probability map ``soft`` writes: the lesion's, else the first."""
        return "lesion" if "lesion" in self.masks else self.masks[0]

    def outputs(self) -> dict[str, Path]:
        """Output paths by key: each mask's name, ``probability``, ``table``."""
        folder = self.outdir / self.subdir
        if self.layout == "bids":
            out = {m: folder / f"{bids.derivative_stem(self.name, m)}.nii.gz"
                   for m in self.masks}
            if self.soft:
                stem = bids.derivative_stem(self.name, self.soft_of, "probseg")
                out["probability"] = folder / f"{stem}.nii.gz"
        else:
            out = {m: folder / f"{self.name}_label-{BIDS_LABEL.get(m, m)}_seg.nii.gz"
                   for m in self.masks}
            if self.soft:
                label = BIDS_LABEL.get(self.soft_of, self.soft_of)
                out["probability"] = folder / f"{self.name}_label-{label}_probseg.nii.gz"
        if self.brain:
            stem = bids.derivative_stem(self.name, "brain") if self.layout == "bids" \
                else f"{self.name}_desc-brain_mask"
            out["brain"] = folder / f"{stem}.nii.gz"
        if "lesion" in self.masks:
            out["table"] = folder / f"{self.name}_lesions.csv"
        if self.morphometry and "cord" in self.masks:
            out["morphometry"] = folder / f"{self.name}_morphometry.csv"
        return out

    @property
    def fingerprint(self) -> dict:
        options = self.options.to_dict()
        if self.levels is not None:
            options["levels"] = str(self.levels)
        if self.centerline is not None:
            options["centerline_file"] = str(self.centerline)
        if self.morphometry:
            options["morphometry"] = True
        if self.brain_mask is not None:
            options["brain_mask"] = str(self.brain_mask)
        if self.locations != "off":
            options["locations"] = self.locations
        if self.brain:
            options["skull_strip"] = self.skull_strip
        if self.model_space != "native":
            options["model_space"] = self.model_space
        return records.fingerprint(self.model, options, self.soft, self.masks)

    def state(self) -> records.State:
        return records.state_of(self.outdir, self.name, self.outputs(), self.fingerprint)

    def done(self) -> bool:
        return self.state().kind == "done"


def collect_inputs(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Files as given; folders searched recursively for images (masks, derivatives and hidden
    folders such as ``.git`` skipped). Paths are made absolute but links are not followed, so
    outputs are named after what the user sees (a DataLad/git-annex file, not its key)."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw).absolute()
        if not path.exists() and not path.is_symlink():
            raise MssegError(f"{raw}: no such file or folder")
        if path.is_dir():
            images = [p for p in io.find_nifti(path, broken_links=True)
                      if "derivatives" not in p.relative_to(path).parts
                      and not is_mask_name(io.strip_nifti_suffix(p.name))]
            if not images:
                raise MssegError(f"{raw}: folder holds no NIfTI image")
            found += images
        else:
            found.append(path)
    names: dict[str, Path] = {}
    for p in found:
        name = io.strip_nifti_suffix(p.name)
        if name in names and names[name] != p:
            raise MssegError(f"{p}: same name as {names[name]}; outputs would collide")
        names[name] = p
    return list(dict.fromkeys(found))


@lru_cache(maxsize=2)
def _segmenter(model: Path, options: SegmentOptions):
    return make_segmenter(open_model(model), options)


def run_job(job: Job) -> dict:
    """Segment one scan and write its outputs and record; never raises (errors go into the
    row). A scan already done with the same settings is skipped with its recorded row."""
    state = job.state()
    if state.kind == "done":
        return _skipped(job)
    start = time.perf_counter()
    try:
        image = io.load(job.image)  # before anything is written: a bad input leaves nothing
    except MssegError as exc:
        return _record_failure(job, time.perf_counter() - start, str(exc))
    with records.scan_lock(job.outdir, job.name) as mine:
        if not mine:
            return _row(job.name, "skipped (running elsewhere)")
        state = job.state()  # again under the lock: another process may have finished it
        if state.kind == "done":
            return _skipped(job)
        if state.kind == "conflict" and not job.overwrite:
            return _row(job.name, "skipped (conflict)", error=state.reason)
        records.write_record(job.outdir, job.name, {"state": "running",
                                                    "fingerprint": job.fingerprint,
                                                    "input": str(job.image)})
        try:
            row = _segment(job, image, start)
        except MssegError as exc:
            return _record_failure(job, time.perf_counter() - start, str(exc))
        except Exception as exc:  # a batch must survive any single failure
            from msseg.extras import extra_of, hint

            detail = traceback.format_exception_only(type(exc), exc)[-1].strip()
            if isinstance(exc, ModuleNotFoundError) and extra_of(exc.name) is not None:
                detail = hint(exc.name)
            return _record_failure(job, time.perf_counter() - start, f"{job.image}: {detail}")
        records.write_record(job.outdir, job.name, {
            "state": "ok", "fingerprint": job.fingerprint, "input": str(job.image), "row": row,
            "sizes": records.output_sizes(job.outputs())})
        return row


def _segment(job: Job, image, start: float) -> dict:
    out = job.outputs()
    levels = io.load(job.levels) if job.levels is not None else None  # bad map: nothing written
    centerline = io.load(job.centerline) if job.centerline is not None else None
    segmenter = _segmenter(job.model, job.options)
    brain = None
    say = _say(job.name)
    if getattr(segmenter.plan, "frame", None) == "resize":      # a brain model
        from msseg.inference.brain import brain_input

        mask = io.load(job.brain_mask) if job.brain_mask is not None else None
        image, brain = brain_input(image, str(job.image), mask, job.skull_strip, job.force, say)
    elif job.brain_mask is not None:
        raise MssegError("--brain-mask: only brain models take one")
    if centerline is not None:
        result = segmenter.segment(image, str(job.image), centerline_mask=centerline)
    elif brain is not None and job.model_space == "mni":
        from msseg.inference.brain import segment_in_mni

        result = segment_in_mni(segmenter, image, str(job.image), job.options.threads, say)
    else:
        result = segmenter.segment(image, str(job.image))
    table = lesion_positions(result.table, result.lesion, job.name, levels) \
        if result.lesion is not None else result.table
    located = {}
    if job.locations != "off" and result.lesion is not None:
        from msseg.lesion_location import atlas_on_scan, location_summary, with_locations

        tissue, how = atlas_on_scan(image, job.locations, say=say)
        table = with_locations(table, result.lesion, tissue)
        located = {"location_atlas": how.split(" ")[0], **location_summary(table)}
    if job.qcdir is not None and job.figures is not None:
        job.figures(job.name, image, result.cord, result.lesion, job.qcdir)
    for name in job.masks:
        io.save_like(result.masks[name].data, image, out[name])
    if brain is not None and "brain" in out:
        io.save_like(brain.data, image, out["brain"])
    if job.soft:
        io.save_like(result.probabilities[job.soft_of].data, image, out["probability"],
                     np.float32)
    if job.layout == "bids":
        _write_sidecars(job, out, segmenter.plan)
    if "table" in out:
        io.write_csv(table, out["table"])
    if "morphometry" in out:
        io.write_csv(_morphometry(result.cord, levels), out["morphometry"])
    cord_mm3 = (float(result.cord.data.sum()) * image.voxel_volume_mm3
                if result.cord is not None else float("nan"))
    return {**_row(job.name, "ok", table if "lesion" in job.masks else None, cord_mm3,
                   time.perf_counter() - start), **located}


def _say(name: str):
    """A scan's progress lines (skull stripping, registrations) on stderr, named."""
    def say(line: str) -> None:
        from msseg.progress import stderr

        stderr().print(f"{name}: {line}")
    return say


def _morphometry(cord, levels) -> pd.DataFrame:
    """The cord's measures per slice (:mod:`msseg.morphometry`), with each slice's level."""
    from msseg.morphometry import cord_morphometry, with_levels

    table = cord_morphometry(cord)
    return with_levels(table, cord, levels) if levels is not None else table


def lesion_positions(table: pd.DataFrame, lesion, name: str, levels=None) -> pd.DataFrame:
    """The lesion table with ``distance_from_top_mm``, ``chunk`` and (with a level map) the
    level columns (joined on ``lesion_id``: the same 26-connected labelling)."""
    from msseg.levels import distance_from_top, lesion_levels

    chunk = re.search(r"_chunk-(\d+)", name)
    out = table.assign(distance_from_top_mm=distance_from_top(table, lesion),
                       chunk=int(chunk.group(1)) if chunk else pd.NA)
    if levels is None or not len(out):
        return out
    found = lesion_levels(lesion, levels).set_index("lesion_id")
    return out.join(found, on="lesion_id")


def _write_sidecars(job: Job, out: dict[str, Path], plan) -> None:
    post = postprocess_config(job.options, plan)
    post = post.to_dict() if post is not None else None
    for key, path in out.items():
        if key in ("table", "morphometry"):      # CSVs: no sidecar
            continue
        kind = "probseg" if key == "probability" else "mask"
        output = job.soft_of if key == "probability" else key
        body = bids.sidecar(job.image, job.raw_root, job.task, output, kind,
                            model_threshold(job.options, plan, output), post)
        io.write_text(json.dumps(body, indent=1), path.parent / (
            io.strip_nifti_suffix(path.name) + ".json"))


def _skipped(job: Job) -> dict:
    record = records.read_record(job.outdir, job.name) or {}
    return {**record.get("row", _row(job.name, "ok")), "status": "skipped (done)"}


def _record_failure(job: Job, seconds: float, error: str) -> dict:
    row = _row(job.name, "failed", seconds=seconds, error=error)
    records.write_record(job.outdir, job.name, {"state": "failed", "fingerprint": job.fingerprint,
                                                "input": str(job.image), "row": row})
    return row


def _row(name, status, table=None, cord_mm3=float("nan"), seconds=0.0, error="") -> dict:
    """A summary row; lesion columns are NaN for failed scans and lesion-free models."""
    n = np.nan if table is None else len(table)
    volume = np.nan if table is None else float(table["volume_mm3"].sum()) if n else 0.0
    return {"scan": name, "status": status, "n_lesions": n,
            "total_lesion_volume_mm3": volume,
            "cord_volume_mm3": cord_mm3, "seconds": round(seconds, 3), "error": error}


def folder_summary(outdir: Path) -> pd.DataFrame:
    """``summary.csv``'s table: every finished scan recorded in the folder (this run's, earlier
    runs', concurrent runs'), sorted by scan; columns some scans add (brain lesion locations)
    before ``error``."""
    rows = records.finished_rows(outdir)
    extra = list(dict.fromkeys(k for row in rows for k in row if k not in SUMMARY_COLUMNS))
    return pd.DataFrame(rows, columns=[*SUMMARY_COLUMNS[:-1], *extra, SUMMARY_COLUMNS[-1]])


def write_folder_summary(outdir: Path) -> pd.DataFrame:
    """Rebuild ``summary.csv`` from the records, under the folder lock (concurrent writers)."""
    with records.folder_lock(outdir):
        summary = folder_summary(outdir)
        io.write_csv(summary, outdir / "summary.csv")
    return summary


def run_batch(jobs: list[Job], n_jobs: int = 1, dask_scheduler: str | None = None,
              on_done: Callable[[dict], None] = lambda row: None,
              worker: Callable[[Job], dict] = run_job) -> pd.DataFrame:
    """Run every job; ``on_done`` sees each summary row as it completes (progress, resume)."""
    rows = []

    def finish(row: dict) -> None:
        rows.append(row)
        on_done(row)

    if dask_scheduler:
        _run_dask(jobs, dask_scheduler, worker, finish)
    elif n_jobs > 1:
        _run_pool(jobs, n_jobs, worker, finish)
    else:
        for job in jobs:
            finish(worker(job))
    order = {job.name: i for i, job in enumerate(jobs)}
    rows.sort(key=lambda r: order[r["scan"]])
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))


def _run_dask(jobs, address: str, worker, finish) -> None:
    from msseg.extras import require  # (run_batch is API too: the CLI checks earlier)

    require("dask.distributed", "--dask-scheduler")
    from dask.distributed import Client
    from dask.distributed import as_completed as dask_completed

    try:
        client = Client(address, timeout="10s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise MssegError(f"--dask-scheduler {address}: cannot reach the scheduler "
                         f"({io.describe(exc)})") from exc
    with client:
        futures = client.map(worker, jobs, pure=False)
        for future in dask_completed(futures):
            finish(future.result())


def _run_pool(jobs: list[Job], n_jobs: int, worker, finish) -> None:
    """Local worker processes, at most ``n_jobs`` scans in flight. A worker killed from outside
    (an out-of-memory kill) breaks the whole pool: the scans that were in flight are retried one
    at a time, a scan whose worker dies again while running alone is recorded as failed, and
    the batch goes on in a fresh pool."""
    queue, lost_before = list(jobs), set()
    while queue:
        suspect = next((j for j in queue if j.name in lost_before), None)
        if suspect is not None:
            queue.remove(suspect)
            if _pool_pass([suspect], 1, worker, finish)[0]:
                finish(_record_failure(suspect, 0.0, f"{suspect.image}: the worker process "
                                       "died (killed from outside, e.g. out of memory)"))
            continue
        lost, unrun = _pool_pass(queue, n_jobs, worker, finish)
        lost_before |= {j.name for j in lost}
        queue = lost + unrun


def _pool_pass(queue: list[Job], width: int, worker, finish) -> tuple[list[Job], list[Job]]:
    """Run ``queue`` with ``width`` scans in flight; on a broken pool return (the jobs in flight,
    the jobs not started), else two empty lists."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, wait
    from concurrent.futures.process import BrokenProcessPool

    todo, running = list(queue), {}
    # spawned, not forked: a fork of a process whose PyTorch/OpenMP threads are running can
    # deadlock in the child
    with ProcessPoolExecutor(width, mp_context=multiprocessing.get_context("spawn")) as pool:
        while todo or running:
            while todo and len(running) < width:
                job = todo.pop(0)
                running[pool.submit(worker, job)] = job
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                job = running.pop(future)
                try:
                    finish(future.result())
                except BrokenProcessPool:
                    return [job, *running.values()], todo
    return [], []
