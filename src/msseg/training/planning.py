"""Self-configuration from the dataset fingerprint, the way nnU-Net plans its U-Nets.

Design notes: docs/explanation/design-notes.md#mssegtrainingplanning.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from msseg.preprocess.plan import Plan

MAX_PATCH = {2: (256, 256), 3: (160, 160, 40)}


def plan(spacings: Sequence[Sequence[float]], shapes: Sequence[Sequence[int]], dims: int,
         patch_size: Sequence[int] | None = None, target_spacing: Sequence[float] | None = None,
         base_filters: int = 16, max_filters: int = 256, max_levels: int = 5,
         whole_context: bool = False) -> Plan:
    """Plan spacing, patch and topology from RPI spacings/shapes of the training images."""
    spacings = np.asarray(spacings, dtype=float)
    shapes = np.asarray(shapes, dtype=float)
    if target_spacing is None:
        target = np.median(spacings, axis=0)[:dims] if dims == 3 else np.median(
            spacings[:, :2], axis=0)
    else:
        target = np.asarray(target_spacing, dtype=float)
    extent = np.median(shapes[:, :dims] * spacings[:, :dims], axis=0)
    size = np.minimum(np.round(extent / target), MAX_PATCH[dims])
    if patch_size is not None:
        size = np.asarray(patch_size, dtype=float)
    whole = whole_context and dims == 3 and patch_size is None
    if whole:
        size[2] = np.ceil(np.max(shapes[:, 2] * spacings[:, 2]) / target[2])
    kernels, strides = _topology(target, size, max_levels)
    total = np.prod(np.asarray(strides), axis=0)
    if patch_size is None:
        rounded = np.maximum(np.round(size / total), 1) * total
        if whole:   # never shorter than the extent: round up
            rounded[2] = np.ceil(size[2] / total[2]) * total[2]
        size = rounded
    filters = tuple(min(base_filters * 2**i, max_filters) for i in range(len(kernels)))
    return Plan(dims, tuple(round(float(t), 4) for t in target), tuple(int(s) for s in size),
                kernels, strides, filters)


def _topology(spacing: np.ndarray, size: np.ndarray, max_levels: int):
    spacing = spacing.copy()
    size = size.copy()
    kernels = [tuple(3 if s <= 2 * spacing.min() else 1 for s in spacing)]
    strides = [tuple(1 for _ in spacing)]
    for _ in range(max_levels):
        pool = (size / 2 >= 4) & (spacing <= 2 * spacing.min())
        if not pool.any():
            break
        stride = tuple(2 if p else 1 for p in pool)
        spacing = spacing * np.asarray(stride)
        size = size / np.asarray(stride)
        strides.append(stride)
        kernels.append(tuple(3 if s <= 2 * spacing.min() else 1 for s in spacing))
    return tuple(kernels), tuple(strides)
