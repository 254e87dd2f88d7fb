"""Patches along the cord centerline: a "tube" of fixed in-plane size following the cord.

For every axial slice ``k`` of an RPI volume, the window of size ``(sx, sy)`` whose start is
``round(centre_k − size/2)`` is cut out (padded with ``fill`` outside the image); stacking the
windows gives a (sx, sy, Z) volume in which the cord stays near the middle. :meth:`Tube.paste`
is the exact inverse inside the windows: ``paste(extract(v))`` equals ``v`` on every voxel a
window covers (and ``fill`` elsewhere).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class Tube:
    starts: np.ndarray          # (Z, 2) int window starts per slice
    size: tuple[int, int]

    @classmethod
    def around(cls, centres: np.ndarray, size: tuple[int, int]) -> Tube:
        centres = np.asarray(centres, dtype=float)
        return cls(np.round(centres - np.asarray(size) / 2).astype(int), tuple(size))

    def extract(self, volume: np.ndarray, fill: float = 0) -> np.ndarray:
        """(…, X, Y, Z) -> (…, sx, sy, Z)."""
        lead = volume.shape[:-3]
        out = np.full((*lead, *self.size, volume.shape[-1]), fill, dtype=volume.dtype)
        for k, (src, dst) in enumerate(self._windows(volume.shape[-3:-1])):
            if src is not None:
                out[(..., *dst, k)] = volume[(..., *src, k)]
        return out

    def paste(self, tube: np.ndarray, shape: tuple[int, int, int], fill: float = 0
              ) -> np.ndarray:
        """(…, sx, sy, Z) -> (…, X, Y, Z) with the windows put back."""
        lead = tube.shape[:-3]
        out = np.full((*lead, *shape), fill, dtype=tube.dtype)
        for k, (src, dst) in enumerate(self._windows(shape[:2])):
            if src is not None:
                out[(..., *src, k)] = tube[(..., *dst, k)]
        return out

    def _windows(self, plane: tuple[int, int]):
        for start in self.starts:
            src, dst = [], []
            for s, n, dim in zip(start, self.size, plane, strict=True):
                lo, hi = max(int(s), 0), min(int(s) + n, dim)
                if hi <= lo:
                    break
                src.append(slice(lo, hi))
                dst.append(slice(lo - s, hi - s))
            yield (tuple(src), tuple(dst)) if len(src) == 2 else (None, None)


def centerline_from_mask(mask: np.ndarray) -> np.ndarray:
    """(nz, 2) in-plane centre of mass (voxel indices) per axial slice; NaN where empty."""
    mask = np.asarray(mask, dtype=bool)
    points = np.full((mask.shape[2], 2), np.nan)
    for k in np.flatnonzero(mask.any(axis=(0, 1))):
        points[k] = ndimage.center_of_mass(mask[:, :, k])
    return points


def centres_from_mask(mask: np.ndarray) -> np.ndarray:
    """(Z, 2) in-plane centre of mass of a cord mask per slice, interpolated over slices
    without cord and held constant beyond its ends (the image centre if it is empty)."""
    points = centerline_from_mask(mask)
    known = ~np.isnan(points).any(1)
    if not known.any():
        return np.tile((np.asarray(mask.shape[:2]) - 1) / 2, (mask.shape[2], 1))
    return interpolate_centres(np.flatnonzero(known).astype(float), points[known],
                               mask.shape[2])


def interpolate_centres(k: np.ndarray, points: np.ndarray, nz: int) -> np.ndarray:
    """Centres at every integer slice 0..nz−1 from points (n, 2) at heights ``k`` (slices)."""
    order = np.argsort(k)
    k, points = np.asarray(k, float)[order], np.asarray(points, float)[order]
    grid = np.arange(nz, dtype=float)
    return np.column_stack([np.interp(grid, k, points[:, a]) for a in range(2)])


def centres_on_grid(world: np.ndarray, affine: np.ndarray, nz: int) -> np.ndarray:
    """Centres on another RPI grid (``affine``, ``nz`` slices) from world points (n, 3) mm."""
    world = np.asarray(world, float)
    world = world[~np.isnan(world).any(1)]
    ijk = (np.linalg.inv(affine) @ np.column_stack([world, np.ones(len(world))]).T)[:3].T
    return interpolate_centres(ijk[:, 2], ijk[:, :2], nz)
