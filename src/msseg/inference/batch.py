"""Batches of scans: one at a time, in local processes (``jobs``) or on a Dask cluster.

For input ``X.nii.gz`` the outputs are ``X_label-SC_seg.nii.gz``, ``X_label-lesion_seg.nii.gz``,
(with ``soft``) ``X_label-lesion_probseg.nii.gz`` and ``X_lesions.csv``, written atomically. A
scan whose outputs all exist is skipped, so a killed batch resumes without losing anything; a
failing scan is recorded in ``summary.csv`` with its error and does not stop the batch.
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
from msseg.inference.segment import Segmenter, SegmentOptions
from msseg.models.registry import open_model

SUFFIXES = {"cord": "_label-SC_seg.nii.gz", "lesion": "_label-lesion_seg.nii.gz",
            "probability": "_label-lesion_probseg.nii.gz", "table": "_lesions.csv"}
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
    cord: bool = True          # the model outputs a cord (False: brain lesion models)

    @property
    def name(self) -> str:
        return io.strip_nifti_suffix(self.image.name)

    def outputs(self) -> dict[str, Path]:
        keys = [k for k in SUFFIXES if (self.soft or k != "probability")
                and (self.cord or k != "cord")]
        return {k: self.outdir / f"{self.name}{SUFFIXES[k]}" for k in keys}

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
def _segmenter(model: Path, options: SegmentOptions) -> Segmenter:
    return Segmenter(open_model(model), options)


def run_job(job: Job) -> dict:
    """Segment one scan and write its outputs; never raises (errors go into the row)."""
    if job.done():
        return _row(job.name, "skipped (done)", table=pd.read_csv(job.outputs()["table"]))
    start = time.perf_counter()
    try:
        image = io.load(job.image)
        result = _segmenter(job.model, job.options).segment(image, str(job.image))
        out = job.outputs()
        if job.qcdir is not None:
            from msseg.report.qc import scan_figures

            scan_figures(job.name, image, result.cord, result.lesion, job.qcdir)
        if "cord" in out:
            io.save_like(result.cord.data, image, out["cord"])
        io.save_like(result.lesion.data, image, out["lesion"])
        if job.soft:
            io.save_like(result.lesion_probability.data, image, out["probability"], np.float32)
        io.write_csv(result.table, out["table"])  # last: its presence marks the scan done
        cord_mm3 = (float(result.cord.data.sum()) * image.voxel_volume_mm3 if "cord" in out
                    else float("nan"))
        return _row(job.name, "ok", result.table, cord_mm3, time.perf_counter() - start)
    except MssegError as exc:
        return _row(job.name, "failed", seconds=time.perf_counter() - start, error=str(exc))
    except Exception as exc:  # a batch must survive any single failure
        detail = traceback.format_exception_only(type(exc), exc)[-1].strip()
        return _row(job.name, "failed", seconds=time.perf_counter() - start,
                    error=f"{job.image}: {detail}")


def _row(name, status, table=None, cord_mm3=float("nan"), seconds=0.0, error="") -> dict:
    n = 0 if table is None else len(table)
    volume = 0.0 if table is None or not n else float(table["volume_mm3"].sum())
    return {"scan": name, "status": status, "n_lesions": n if status != "failed" else np.nan,
            "total_lesion_volume_mm3": volume if status != "failed" else np.nan,
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
