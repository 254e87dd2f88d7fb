"""Stacking of chunk acquisitions per patient (Algorithm 1 of the axial-T2w paper, improved).

Design notes: docs/explanation/design-notes.md#mssegevaluationstacking.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from msseg.image import Image

CHUNK_PATTERN = re.compile(r"_chunk-(\d+)")


def split_chunk(case_id: str) -> tuple[str, int | None]:
    """``'sub-01_chunk-2_T2w'`` -> ``('sub-01_T2w', 2)``; no chunk entity -> ``(case_id, None)``."""
    match = CHUNK_PATTERN.search(case_id)
    if match is None:
        return case_id, None
    return case_id[: match.start()] + case_id[match.end():], int(match.group(1))


@dataclass(frozen=True)
class Stack:
    image: Image              # stacked mask, RPI, physical spacing
    slice_chunk: np.ndarray   # chunk number of each axial slice (0 for separator slices)


def stack_chunks(chunks: Sequence[Image], chunk_ids: Sequence[int], gap: int = 1) -> Stack:
    """Stack chunk masks (any orientation) into one RPI volume; chunk 1 is the most cranial."""
    from msseg.preprocess.orient import to_rpi  # here: `evaluate` without stacking skips it

    order = np.argsort(chunk_ids)
    rpi = [to_rpi(chunks[i]) for i in order]
    ids = [int(chunk_ids[i]) for i in order]
    target = rpi[0].spacing
    blocks = [_on_spacing(im, target, cid).data.astype(bool) for im, cid in zip(rpi, ids,
                                                                                strict=True)]
    nx = max(b.shape[0] for b in blocks)
    ny = max(b.shape[1] for b in blocks)
    parts, labels = [], []
    for block, cid in reversed(list(zip(blocks, ids, strict=True))):  # caudal first: z runs I->S
        if parts:
            parts.append(np.zeros((nx, ny, gap), bool))
            labels.append(np.zeros(gap, int))
        parts.append(_pad_in_plane(block, nx, ny))
        labels.append(np.full(block.shape[2], cid))
    affine = np.diag([-target[0], target[1], target[2], 1.0])
    return Stack(Image(np.concatenate(parts, axis=2), affine), np.concatenate(labels))


def _on_spacing(image: Image, spacing: tuple[float, float, float], chunk: int) -> Image:
    if np.allclose(image.spacing, spacing, rtol=1e-3):
        return image
    if not np.isclose(image.spacing[2], spacing[2], rtol=1e-3):
        warnings.warn(f"chunk {chunk}: slice thickness {image.spacing[2]:g} mm differs from "
                      f"chunk 1 ({spacing[2]:g} mm); resampled through-plane", stacklevel=3)
    from msseg.preprocess.resample import resample_to_spacing  # (SciPy's ndimage: 0.2 s)

    return resample_to_spacing(image, spacing, order=0)


def _pad_in_plane(block: np.ndarray, nx: int, ny: int) -> np.ndarray:
    """Centre ``block`` in an (nx, ny) plane, zero-padded."""
    px, py = nx - block.shape[0], ny - block.shape[1]
    return np.pad(block, ((px // 2, px - px // 2), (py // 2, py - py // 2), (0, 0)))
