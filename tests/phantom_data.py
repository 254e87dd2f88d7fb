"""Tiny BIDS-like phantom datasets for data and training tests."""

from __future__ import annotations

from pathlib import Path

from msseg import io
from msseg.data.index import assign_folds, save_index, scan
from msseg.phantom import make_phantom


def write_bids_phantoms(root: Path, n: int = 4, contrasts=("T2w",), shape=(64, 64, 6),
                        spacing=(0.7, 0.7, 5.0)) -> Path:
    for i in range(n):
        sub = f"sub-ph{i:02d}"
        for j, contrast in enumerate(contrasts):
            p = make_phantom(10 * i + j, shape=shape, spacing=spacing, n_lesions=3)
            stem = f"{sub}_{contrast}"
            io.save(p.image, root / sub / "anat" / f"{stem}.nii.gz")
            labels = root / "derivatives" / "labels" / sub / "anat"
            io.save_like(p.cord.data, p.image, labels / f"{stem}_label-SC_seg.nii.gz")
            io.save_like(p.lesion.data, p.image, labels / f"{stem}_label-lesion_seg.nii.gz")
    return root


def phantom_index(tmp: Path, n: int = 4, contrasts=("T2w",), folds: int = 2) -> Path:
    root = write_bids_phantoms(tmp / "bids", n, contrasts)
    return save_index(assign_folds(scan(root), folds), tmp / "dataset.json")
