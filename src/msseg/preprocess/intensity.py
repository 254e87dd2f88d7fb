"""Intensity standardisation that can be learnt on a training set and stored with a model.

Design notes: docs/explanation/design-notes.md#mssegpreprocessintensity.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

NYUL_PERCENTILES = (1.0, *np.arange(10.0, 100.0, 10.0), 99.0)
NYUL_SCALE = (0.0, 100.0)
QUANTILE_PERCENTILES = tuple(float(p) for p in range(101))


#: ``mask`` value meaning "every voxel" (no boolean mask of the image's size is built)
EVERYWHERE = True
_BLOCK = 1 << 22   # voxels mapped at a time: float64 temporaries stay small (~32 MB)
SAMPLE = 1 << 24   # voxels whose percentiles stand for a larger volume's (mask=EVERYWHERE)


def foreground(data: np.ndarray, mask: np.ndarray | bool | None = None) -> np.ndarray:
    """Voxels that define the intensity distribution: ``mask`` (``EVERYWHERE``: all voxels)
    or, without one, the non-zero voxels."""
    if mask is EVERYWHERE:
        return np.ones(np.shape(data), bool)
    if mask is not None:
        return np.asarray(mask, dtype=bool)
    return np.asarray(data) != 0


def knots(data: np.ndarray, percentiles: Sequence[float],
          mask: np.ndarray | bool | None = None) -> np.ndarray:
    """Percentiles (numpy's linear rule) of the foreground voxels, in the data's own float
    type (no float64 copy of a volume). With ``mask=EVERYWHERE`` on volumes of more than
    ``SAMPLE`` voxels, of an evenly strided sample of ``SAMPLE`` voxels (a whole-spine scan's
    knots move by far less than one intensity step)."""
    data = np.asarray(data)
    if mask is EVERYWHERE:
        step = -(-data.size // SAMPLE)
        values = data.reshape(-1) if step == 1 else data.flat[::step]
    else:
        values = data[foreground(data, mask)]
    if not np.issubdtype(values.dtype, np.floating):
        values = values.astype(np.float32)
    if values.size == 0:
        raise ValueError("no foreground voxel to learn the intensity distribution from")
    return np.percentile(values, percentiles).astype(np.float64)


def piecewise_map(data: np.ndarray, src: Sequence[float], dst: Sequence[float],
                  mask: np.ndarray | bool | None = None) -> np.ndarray:
    """Map ``src[i] -> dst[i]`` linearly between knots, extend the end segments beyond them.

    Repeated source knots (flat histograms) are merged so the map stays a function; ``dst``
    must be non-decreasing. Voxels outside ``mask`` (default: the zeros) are returned as is.
    Float32 out (C order); the arithmetic is float64, a slab of the first axis at a time, so
    temporaries stay small whatever the input's strides.
    """
    src, dst = _strict(np.asarray(src, float), np.asarray(dst, float))
    data = np.asarray(data)
    out = np.array(data, dtype=np.float32, order="C")
    keep = None if mask is None or mask is EVERYWHERE else np.asarray(mask, bool)
    lo_slope = hi_slope = 0.0
    if src.size > 1:
        lo_slope = (dst[1] - dst[0]) / (src[1] - src[0])
        hi_slope = (dst[-1] - dst[-2]) / (src[-1] - src[-2])
    rows = max(1, _BLOCK // max(1, int(np.prod(data.shape[1:]))))
    for start in range(0, max(1, data.shape[0] if data.ndim else 1), rows):
        part = out[start:start + rows] if data.ndim else out
        if mask is EVERYWHERE and src.size > 1:   # every voxel: no boolean gathers
            values = part.reshape(-1).astype(np.float64)
            part.reshape(-1)[:] = _extended_interp(values, src, dst, lo_slope, hi_slope)
            continue
        if mask is EVERYWHERE:
            inside = np.ones(part.shape, bool)
        elif keep is not None:
            inside = keep[start:start + rows] if data.ndim else keep
        else:
            inside = part != 0
        values = part[inside].astype(np.float64)
        if src.size == 1:  # a constant image: shift it onto the single target
            part[inside] = dst[0]
            continue
        part[inside] = _extended_interp(values, src, dst, lo_slope, hi_slope)
    return out


def _extended_interp(values: np.ndarray, src: np.ndarray, dst: np.ndarray, lo_slope: float,
                     hi_slope: float) -> np.ndarray:
    """``np.interp`` between the knots, the end segments extended linearly beyond them."""
    mapped = np.interp(values, src, dst)
    low, high = values < src[0], values > src[-1]
    mapped[low] = dst[0] + (values[low] - src[0]) * lo_slope
    mapped[high] = dst[-1] + (values[high] - src[-1]) * hi_slope
    return mapped


def _strict(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if np.any(np.diff(dst) < 0):
        raise ValueError("target knots must be non-decreasing")
    keep = np.concatenate([[True], np.diff(src) > 0])
    return src[keep], dst[keep]


def learn_nyul(images: Iterable[np.ndarray], masks: Iterable[np.ndarray | None] | None = None
               ) -> list[float]:
    """Standard landmarks: mean decile positions after mapping [p1, p99] onto [0, 100]."""
    images = list(images)
    masks = [None] * len(images) if masks is None else list(masks)
    scaled = []
    for data, mask in zip(images, masks, strict=True):
        k = knots(data, NYUL_PERCENTILES, mask)
        span = max(k[-1] - k[0], 1e-12)
        scaled.append(NYUL_SCALE[0] + (k - k[0]) / span * (NYUL_SCALE[1] - NYUL_SCALE[0]))
    return [float(v) for v in np.mean(scaled, axis=0)]


def apply_nyul(data: np.ndarray, landmarks: Sequence[float],
               mask: np.ndarray | None = None) -> np.ndarray:
    return piecewise_map(data, knots(data, NYUL_PERCENTILES, mask), landmarks, mask)


def learn_quantile_template(images: Iterable[np.ndarray],
                            masks: Iterable[np.ndarray | None] | None = None) -> list[float]:
    """The template: mean quantile function (0..100th percentiles) of the training images."""
    images = list(images)
    masks = [None] * len(images) if masks is None else list(masks)
    curves = [knots(d, QUANTILE_PERCENTILES, m) for d, m in zip(images, masks, strict=True)]
    return [float(v) for v in np.mean(curves, axis=0)]


def apply_quantile(data: np.ndarray, template: Sequence[float],
                   mask: np.ndarray | None = None) -> np.ndarray:
    return piecewise_map(data, knots(data, QUANTILE_PERCENTILES, mask), template, mask)


def minmax(data: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Linear map of the foreground's [min, max] onto [0, 1]; the background keeps its value."""
    inside = foreground(data, mask)
    out = np.asarray(data, dtype=np.float32).copy()
    values = out[inside]
    if values.size:
        lo, hi = float(values.min()), float(values.max())
        out[inside] = (values - lo) / max(hi - lo, 1e-12)
    return out


def zscore_masked(data: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """(x − mean) / std of the foreground; the background keeps its value."""
    inside = foreground(data, mask)
    out = np.asarray(data, dtype=np.float32).copy()
    values = out[inside]
    if values.size:
        out[inside] = (values - values.mean()) / max(float(values.std()), 1e-6)
    return out
