"""Index a BIDS tree or a plain folder of images with cord and lesion masks.

Design notes: docs/explanation/design-notes.md#mssegdataindex.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from msseg.bids import (
    CORD_SUFFIXES,
    ENTITY,
    LESION_SUFFIXES,
    PLAIN_CONTRASTS,
    contrast_of,
    is_mask_name,
    legacy_name,
    site_of,
)
from msseg.errors import MssegError
from msseg.io import find_nifti, load_header, strip_nifti_suffix


@dataclass(frozen=True)
class Record:
    image: str
    cord: str | None
    lesion: str | None
    contrast: str
    orientation: str
    spacing: tuple[float, float, float]
    shape: tuple[int, int, int]
    patient: str
    session: str | None
    site: str
    chunk: int | None
    fold: int | None = None
    raters: tuple[str, ...] = ()   # lesion masks of individual raters (X_label-lesion_raterK_seg)


def scan(root: str | Path) -> list[Record]:
    """Index every image under ``root`` (see module docstring)."""
    root = Path(root)
    if not root.is_dir():
        raise MssegError(f"{root}: not a folder")
    files = find_nifti(root)
    masks = [p for p in files if is_mask_name(strip_nifti_suffix(p.name))]
    images = [p for p in files if p not in set(masks) and "derivatives" not in p.parts]
    if not images:
        raise MssegError(f"{root}: no image found")
    sites = _participant_sites(root)
    return [_record(root, img, masks, sites) for img in images]


def _record(root: Path, image: Path, masks: list[Path], sites: dict[str, str]) -> Record:
    stem = strip_nifti_suffix(image.name)
    entities = dict(ENTITY.findall(stem))
    header = load_header(image)
    affine = header.get_best_affine()
    rel = image.relative_to(root)
    patient = ("sub-" + entities["sub"]) if "sub" in entities else _plain_patient(rel, stem)
    site = sites.get(patient) or (site_of(stem) if "sub" in entities else rel.parts[0])
    return Record(
        image=str(image),
        cord=_find_mask(image, stem, masks, CORD_SUFFIXES),
        lesion=_find_mask(image, stem, masks, LESION_SUFFIXES),
        contrast=contrast_of(stem),
        orientation="".join(nib.aff2axcodes(affine)),
        spacing=tuple(float(z) for z in header.get_zooms()[:3]),
        shape=tuple(int(n) for n in header.get_data_shape()[:3]),
        patient=patient,
        session=("ses-" + entities["ses"]) if "ses" in entities else None,
        site=site or "unknown",
        chunk=int(entities["chunk"]) if "chunk" in entities else None,
        raters=_find_raters(stem, masks),
    )


def _find_raters(stem: str, masks: list[Path]) -> tuple[str, ...]:
    pattern = re.compile(re.escape(stem) + r"_label-lesion_rater([A-Za-z0-9]+)_seg$")
    found = sorted((m.group(1), str(p)) for p in masks
                   if (m := pattern.match(strip_nifti_suffix(p.name))))
    return tuple(path for _, path in found)


def _plain_patient(rel: Path, stem: str) -> str:
    folders = [f for f in rel.parts[:-1] if f.lower() not in (*PLAIN_CONTRASTS, "mt", "anat")]
    return folders[-1] if folders else stem


def _find_mask(image: Path, stem: str, masks: list[Path], suffixes: Iterable[str]) -> str | None:
    named = [(legacy_name(strip_nifti_suffix(m.name)), m) for m in masks]
    own = [item for item in named if item[0] != strip_nifti_suffix(item[1].name)]
    for pool in ([item for item in named if item not in own], own):   # msseg's outputs last
        for suffix in suffixes:  # most specific first
            candidates = [m for name, m in pool if name == stem + suffix]
            # beside the image first, then anywhere (BIDS derivatives)
            candidates.sort(key=lambda m: m.parent != image.parent)
            if candidates:
                return str(candidates[0])
    return None


def _participant_sites(root: Path) -> dict[str, str]:
    path = root / "participants.tsv"
    if not path.is_file():
        return {}
    table = pd.read_csv(path, sep="\t", dtype=str)
    column = next((c for c in ("site", "institution", "institution_id") if c in table.columns),
                  None)
    if column is None or "participant_id" not in table.columns:
        return {}
    return dict(zip(table["participant_id"], table[column], strict=True))


def assign_folds(records: list[Record], k: int = 5, seed: int = 0) -> list[Record]:
    """Patient-level k-fold split: all images (chunks, sessions) of a patient share a fold."""
    if k < 2:
        raise MssegError(f"--folds {k}: need at least 2 folds")
    patients = sorted({r.patient for r in records})
    order = np.random.default_rng(seed).permutation(len(patients))
    fold_of = {patients[i]: rank % k for rank, i in enumerate(order)}
    return [Record(**{**asdict(r), "fold": fold_of[r.patient]}) for r in records]


def save_index(records: list[Record], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"records": [asdict(r) for r in records]}, indent=1))
    return path


def load_index(path: str | Path) -> list[Record]:
    path = Path(path)
    try:
        raw = json.loads(path.read_text())["records"]
    except (OSError, ValueError, KeyError) as exc:
        raise MssegError(f"{path}: not an msseg dataset index ({exc})") from exc
    return [Record(**{**r, "spacing": tuple(r["spacing"]), "shape": tuple(r["shape"]),
                      "raters": tuple(r.get("raters", ()))})
            for r in raw]
