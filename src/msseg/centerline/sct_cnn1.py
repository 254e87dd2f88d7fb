"""SCT's CNN1 centerline detector (``sct_deepseg_sc -centerline cnn``), then msseg's path.

Design notes: docs/explanation/design-notes.md#mssegcenterlinesct_cnn1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from msseg.centerline.detect import (
    Centerline,
    CenterlineOptions,
    centerline_from_candidates,
    slice_candidates,
)
from msseg.preprocess.sct import CNN1_PATCH, crop_start

BRAIN_SCANS = 10   # consecutive full-slice scans after which SCT stops (brain section)


@dataclass(frozen=True)
class Cnn1Result:
    probabilities: np.ndarray   # (X, Y, Z) float32: CNN1's output where > 0.5, else 0
    z_max: int | None           # SCT's brain crop: no centerline at or above this slice

    @property
    def found(self) -> bool:
        return bool(self.probabilities.any())


def cnn1_input(volume: np.ndarray) -> np.ndarray:
    """CNN1's input volume: x zero-padded to a multiple of 80, y cropped to one (or padded to
    80), then p2–p98 (of the padded volume, zeros included) → [0, 255], clipped; float32."""
    nx, ny = volume.shape[:2]
    px = int(np.ceil(nx / CNN1_PATCH)) * CNN1_PATCH
    keep_y = (ny // CNN1_PATCH) * CNN1_PATCH if ny > CNN1_PATCH else ny
    py = keep_y if ny > CNN1_PATCH else CNN1_PATCH
    data = np.zeros((px, py, volume.shape[2]), np.float32)
    data[:nx, :keep_y] = volume[:, :keep_y]
    p2, p98 = np.percentile(data, (2, 98))
    scale = np.float32(255) / np.float32(p98 - p2) if p98 > p2 else np.float32(0)
    return ((np.clip(data, p2, p98) - np.float32(p2)) * scale).astype(np.float32)


def sct_heatmap(volume: np.ndarray, network: Callable[[np.ndarray], np.ndarray],
                mean: float, std: float, brain: bool = True) -> Cnn1Result:
    """CNN1's > 0.5 probabilities per slice of an RPI 0.5 mm volume (X, Y, Z), SCT's way.
    ``network``: (B, 1, 80, 80) float32 -> (B, 1, 80, 80) sigmoid."""
    data = cnn1_input(volume)
    shape = volume.shape[:2]
    out = np.zeros(volume.shape, np.float32)
    tiles = [(x, y) for y in range(0, data.shape[1], CNN1_PATCH)
             for x in range(0, data.shape[0], CNN1_PATCH)]
    com, scans, stop = None, 0, None
    for z in range(volume.shape[2]):
        if com is not None:
            scans = 0
            out[:, :, z] = _track(data[:, :, z], com, shape, network, mean, std)
            com = _centre(out[:, :, z] > 0.5)
        if com is None:
            out[:, :, z] = _scan(data[:, :, z], tiles, shape, network, mean, std)
            com = _largest_centre(out[:, :, z] > 0.5)
            scans += 1
            if scans > BRAIN_SCANS and brain:
                stop = z
                break
        out[:, :, z][out[:, :, z] < 0.5] = 0
    # z_max as SCT finds it: the slice where the loop stopped keeps its raw output there
    nonzero = np.flatnonzero(out.any(axis=(0, 1)))
    z_max = int(nonzero.max()) if len(nonzero) else None
    if z_max == volume.shape[2] - 1:
        z_max = None
    if stop is not None:
        out[:, :, stop][out[:, :, stop] < 0.5] = 0
    return Cnn1Result(out, z_max)


def _normalised(blocks: np.ndarray, mean: float, std: float) -> np.ndarray:
    return ((blocks - np.float32(mean)) / np.float32(std))[:, None].astype(np.float32)


def _track(data: np.ndarray, com: tuple[int, int], shape, network, mean, std) -> np.ndarray:
    """The block centred on the previous slice's centre of mass, placed as SCT places it
    (a block clamped at the padded edge is written at the unpadded edge)."""
    x0 = crop_start(com[0], CNN1_PATCH, data.shape[0])
    y0 = crop_start(com[1], CNN1_PATCH, data.shape[1])
    block = data[x0:x0 + CNN1_PATCH, y0:y0 + CNN1_PATCH]
    pred = network(_normalised(block[None], mean, std))[0, 0]
    out = np.zeros(shape, np.float32)
    ox = _placed(x0, shape[0])
    oy = _placed(y0, shape[1])
    nx, ny = min(CNN1_PATCH, shape[0] - ox), min(CNN1_PATCH, shape[1] - oy)
    out[ox:ox + nx, oy:oy + ny] = pred[:nx, :ny]
    return out


def _placed(start: int, dim: int) -> int:
    """Where SCT writes a tracking block that starts at ``start`` of the padded axis."""
    if start + CNN1_PATCH > dim:
        return dim - CNN1_PATCH if dim > CNN1_PATCH else 0
    return start


def _scan(data: np.ndarray, tiles, shape, network, mean, std) -> np.ndarray:
    """Every non-overlapping tile of the slice, in one batch; trimmed to the unpadded
    slice."""
    blocks = np.stack([data[x:x + CNN1_PATCH, y:y + CNN1_PATCH] for x, y in tiles])
    pred = network(_normalised(blocks, mean, std))[:, 0]
    out = np.zeros(shape, np.float32)
    for (x, y), p in zip(tiles, pred, strict=True):
        nx, ny = min(CNN1_PATCH, shape[0] - x), min(CNN1_PATCH, shape[1] - y)
        if nx > 0 and ny > 0:
            out[x:x + nx, y:y + ny] = p[:nx, :ny]
    return out


def _centre(mask: np.ndarray) -> tuple[int, int] | None:
    if not mask.any():
        return None
    cx, cy = ndimage.center_of_mass(mask)
    return int(cx), int(cy)


def _largest_centre(mask: np.ndarray) -> tuple[int, int] | None:
    if not mask.any():
        return None
    labels, _ = ndimage.label(mask)
    largest = np.bincount(labels.ravel())[1:].argmax() + 1
    return _centre(labels == largest)


def centerline_from_cnn1(result: Cnn1Result, affine: np.ndarray,
                         options: CenterlineOptions | None = None) -> Centerline:
    """msseg's optimal path through CNN1's components (one candidate per component of each
    slice), on the RPI grid of ``affine``; slices from ``z_max`` up are left undetected.
    By default candidates keep their deepest voxel and the smoothing its 3 mm on thick slices
    too (``refine`` and ``thick_smoothing`` off): the agreement with SCT's own automatic runs
    (tests/integration/test_sct_models.py) was measured so."""
    options = options or CenterlineOptions(refine=False, thick_smoothing=False)
    spacing = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    nz = result.probabilities.shape[2]
    top = nz if result.z_max is None else result.z_max
    empty = (np.zeros((0, 2)), np.zeros(0))
    cands = [slice_candidates(result.probabilities[:, :, z], tuple(spacing[:2]), options)
             if z < top else empty for z in range(nz)]
    return centerline_from_candidates(cands, affine, options)
