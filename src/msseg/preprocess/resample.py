"""Resampling to a voxel spacing with a correctly updated affine.

The field of view is kept corner to corner: with ratio ``r = new / old`` along an axis, new voxel
``i`` has its centre at old continuous index ``(i + 0.5) * r - 0.5``. The new affine is the old one
composed with that index mapping, so world coordinates of voxel centres stay consistent.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from msseg.image import Image


def resampled_grid(image: Image, spacing: Sequence[float]) -> tuple[tuple[int, ...], np.ndarray]:
    """Shape and affine of the grid with voxel size ``spacing`` covering ``image``'s extent."""
    old = np.asarray(image.spacing)
    new = np.asarray(spacing, dtype=np.float64)
    ratio = new / old
    shape = tuple(max(1, int(round(n / r))) for n, r in zip(image.shape[:3], ratio, strict=True))
    index_map = np.eye(4)
    index_map[:3, :3] = np.diag(ratio)
    index_map[:3, 3] = 0.5 * ratio - 0.5
    return shape, image.affine @ index_map


def resample_to_spacing(image: Image, spacing: Sequence[float], order: int = 1,
                        reuse: bool = False) -> Image:
    """Resample ``image`` to voxel size ``spacing`` (mm). ``order=0`` for label maps."""
    shape, affine = resampled_grid(image, spacing)
    return resample_to_grid(image, shape, affine, order=order, reuse=reuse)


def resample_to_grid(image: Image, shape: Sequence[int], affine: np.ndarray,
                     order: int = 1, reuse: bool = False) -> Image:
    """Resample onto an arbitrary grid (shape + affine) by mapping its voxel centres back.
    Onto the image's own grid or a sub-box of it the values are copied (``reuse``: a view of
    the same array is returned when its dtype is already the output's — for callers that own
    it)."""
    vox_to_old = np.linalg.inv(image.affine) @ np.asarray(affine, dtype=np.float64)
    data = image.data
    out_dtype = data.dtype if order == 0 else np.float32
    if tuple(shape) == data.shape[:3] and np.allclose(vox_to_old, np.eye(4), atol=1e-6):
        # the same grid: every output voxel centre is an input voxel centre (no copy needed)
        return Image(data.astype(out_dtype, copy=not reuse), affine, None)
    shift = vox_to_old[:3, 3]
    if np.allclose(vox_to_old[:3, :3], np.eye(3), atol=1e-6) and np.allclose(
            shift, np.round(shift), atol=1e-6):   # a sub-box of the image's own grid
        start = np.round(shift).astype(int)
        stop = start + np.asarray(shape[:3])
        if (start >= 0).all() and (stop <= data.shape[:3]).all():
            part = data[tuple(slice(a, b) for a, b in zip(start, stop, strict=True))]
            return Image(part.astype(out_dtype, copy=not reuse), affine, None)
    matrix = vox_to_old[:3, :3]
    if order > 0 and np.allclose(matrix, np.diag(np.diagonal(matrix)), rtol=0, atol=1e-9):
        matrix = np.diagonal(matrix)   # axis-aligned: scipy's faster path (same values to 1e-7)
    out = ndimage.affine_transform(
        data.astype(np.float32, copy=False) if order > 0 else data,
        matrix, offset=vox_to_old[:3, 3], output_shape=tuple(shape),
        order=order, mode="nearest", output=out_dtype,
    )
    return Image(out, affine, None)
