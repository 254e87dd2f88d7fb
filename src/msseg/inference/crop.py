"""The neighbourhood of the cord on a grid: where a crop-accelerated segmenter runs."""

from __future__ import annotations

import numpy as np

from msseg.image import bounding_box, spacing_from_affine

CORD_HALF_WIDTH_MM = 7.0   # the crop box reaches this far beyond the centerline, plus margin


def cord_neighbourhood(shape: tuple[int, ...], affine: np.ndarray, world: np.ndarray,
                       margin_mm: float, step_mm: float = 0.5) -> np.ndarray:
    """The neighbourhood of the cord on a grid: around every point of the centerline (world
    mm, densified to ``step_mm``), ± ``margin_mm`` along the two grid axes across the cord,
    on the slices of the axis closest to S–I whose slab the point lies in (the nearest
    slice, and its neighbour when the point is within half a densification step of their
    border, so no slice is skipped) — a tube, so a curved cord's box does not grow with its
    curvature, and a thick slice holds the cord positions within its own thickness only."""
    world = _densified(world, step_mm)
    inverse = np.linalg.inv(affine)
    ijk = world @ inverse[:3, :3].T + inverse[:3, 3]
    spacing = spacing_from_affine(affine)
    along = int(np.argmax(np.abs(affine[2, :3]) / spacing))
    margin = np.ceil(margin_mm / spacing)
    lo = np.floor(ijk - margin)
    hi = np.ceil(ijk + margin) + 1
    reach = 0.5 + 0.5 * step_mm / spacing[along]
    lo[:, along] = np.ceil(ijk[:, along] - reach)
    hi[:, along] = np.floor(ijk[:, along] + reach) + 1
    lo = np.clip(lo, 0, shape).astype(int)
    hi = np.clip(hi, 0, shape).astype(int)
    mask = np.zeros(shape, bool)
    for a, b in zip(lo, hi, strict=True):
        mask[a[0]:b[0], a[1]:b[1], a[2]:b[2]] = True
    return mask


def _densified(points: np.ndarray, step_mm: float) -> np.ndarray:
    """Points (n, 3) with extra points on every segment so that none is longer than step."""
    out = [points[:1]]
    for a, b in zip(points[:-1], points[1:], strict=True):
        n = max(1, int(np.ceil(np.linalg.norm(b - a) / step_mm)))
        out.append(a + (b - a) * (np.arange(1, n + 1)[:, None] / n))
    return np.concatenate(out)


def box_of(mask: np.ndarray) -> tuple[slice, ...]:
    """Voxel box of the non-zero voxels (empty slices if there are none)."""
    return bounding_box(mask) or tuple(slice(0, 0) for _ in mask.shape)
