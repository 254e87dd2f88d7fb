"""Batches of scans: one at a time, in local processes (``jobs``) or on a Dask cluster.

For input ``X.nii.gz`` the outputs are ``X_label-SC_seg.nii.gz`` (cord),
``X_label-lesion_seg.nii.gz``, ``X_label-<name>_seg.nii.gz`` for any other label of the model,
(with ``soft``) ``X_label-lesion_probseg.nii.gz`` (the cord's for a model without lesions) and
``X_lesions.csv``, written atomically, the table last. A scan whose outputs all exist is
skipped, so a killed batch resumes without losing anything; a failing scan is recorded in
``summary.csv`` with its error and does not stop the batch.
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from msseg import io
from msseg.data.index import is_mask_name
from msseg.errors import MssegError
from msseg.inference.segment import SegmentOptions, make_segmenter
from msseg.models.registry import open_model

BIDS_LABEL = {"cord": "SC", "lesion": "lesion"}
SUMMARY_COLUMNS = ("scan", "status", "n_lesions", "total_lesion_volume_mm3", "cord_volume_mm3",
                   "seconds", "error")


@dataclass(frozen=True)
class Job:
    image: Path
    outdir: Path
    model: Path
    options: SegmentOptions
    soft: bool
    qcdir: Path | None = None
    masks: tuple[str, ...] = ("cord", "lesion")   # the model's named outputs

    @property
    def name(self) -> str:
        return io.strip_nifti_suffix(self.image.name)

    @property
    def soft_of(self) -> str:
        """The output whose probability map ``soft`` writes: the lesion's, else the first."""
        return "lesion" if "lesion" in self.masks else self.masks[0]

    def outputs(self) -> dict[str, Path]:
        """Output paths by key: each mask's name, ``probability``, ``table``."""
        out = {m: self.outdir / f"{self.name}_label-{BIDS_LABEL.get(m, m)}_seg.nii.gz"
               for m in self.masks}
        if self.soft:
            label = BIDS_LABEL.get(self.soft_of, self.soft_of)
            out["probability"] = self.outdir / f"{self.name}_label-{label}_probseg.nii.gz"
        if "lesion" in self.masks:
            out["table"] = self.outdir / f"{self.name}_lesions.csv"
        return out

    def done(self) -> bool:
        return all(p.exists() for p in self.outputs().values())


def collect_inputs(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Files as given; folders searched recursively for images (masks and derivatives skipped)."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise MssegError(f"{path}: no such file or folder")
        if path.is_dir():
            images = sorted(p for p in path.rglob("*") if p.is_file() and io.is_nifti(p)
                            and "derivatives" not in p.parts
                            and not is_mask_name(io.strip_nifti_suffix(p.name)))
            if not images:
                raise MssegError(f"{path}: folder holds no NIfTI image")
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
    """Segment one scan and write its outputs; never raises (errors go into the row)."""
    out = job.outputs()
    if job.done():
        table = pd.read_csv(out["table"]) if "table" in out else None
        return _row(job.name, "skipped (done)", table=table)
    start = time.perf_counter()
    try:
        image = io.load(job.image)
        result = _segmenter(job.model, job.options).segment(image, str(job.image))
        if job.qcdir is not None:
            from msseg.report.qc import scan_figures

            scan_figures(job.name, image, result.cord, result.lesion, job.qcdir)
        for name in job.masks:
            io.save_like(result.masks[name].data, image, out[name])
        if job.soft:
            io.save_like(result.probabilities[job.soft_of].data, image, out["probability"],
                         np.float32)
        if "table" in out:
            io.write_csv(result.table, out["table"])  # last: its presence marks the scan done
        cord_mm3 = (float(result.cord.data.sum()) * image.voxel_volume_mm3
                    if result.cord is not None else float("nan"))
        table = result.table if "lesion" in job.masks else None
        return _row(job.name, "ok", table, cord_mm3, time.perf_counter() - start)
    except MssegError as exc:
        return _row(job.name, "failed", seconds=time.perf_counter() - start, error=str(exc))
    except Exception as exc:  # a batch must survive any single failure
        detail = traceback.format_exception_only(type(exc), exc)[-1].strip()
        return _row(job.name, "failed", seconds=time.perf_counter() - start,
                    error=f"{job.image}: {detail}")


def _row(name, status, table=None, cord_mm3=float("nan"), seconds=0.0, error="") -> dict:
    """A summary row; lesion columns are NaN for failed scans and lesion-free models."""
    n = np.nan if table is None else len(table)
    volume = np.nan if table is None else float(table["volume_mm3"].sum()) if n else 0.0
    return {"scan": name, "status": status, "n_lesions": n,
            "total_lesion_volume_mm3": volume,
            "cord_volume_mm3": cord_mm3, "seconds": round(seconds, 3), "error": error}


def run_batch(jobs: list[Job], n_jobs: int = 1, dask_scheduler: str | None = None,
              on_done: Callable[[dict], None] = lambda row: None) -> pd.DataFrame:
    """Run every job; ``on_done`` sees each summary row as it completes (progress, resume)."""
    rows = []
    if dask_scheduler:
        from dask.distributed import Client
        from dask.distributed import as_completed as dask_completed

        with Client(dask_scheduler) as client:
            futures = client.map(run_job, jobs, pure=False)
            for future in dask_completed(futures):
                rows.append(future.result())
                on_done(rows[-1])
    elif n_jobs > 1:
        with ProcessPoolExecutor(n_jobs) as pool:
            for future in as_completed([pool.submit(run_job, job) for job in jobs]):
                rows.append(future.result())
                on_done(rows[-1])
    else:
        for job in jobs:
            rows.append(run_job(job))
            on_done(rows[-1])
    order = {job.name: i for i, job in enumerate(jobs)}
    rows.sort(key=lambda r: order[r["scan"]])
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
