"""Heatmap -> candidates -> optimal path -> smooth centerline, one point per axial slice.

Design notes: docs/explanation/design-notes.md#mssegcenterlinedetect.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from msseg.centerline.optimize import PathCost, optimal_path
from msseg.image import Image, bounding_box, spacing_from_affine


@dataclass(frozen=True)
class CenterlineOptions:
    threshold: float = 0.5
    max_candidates: int = 4
    cord_radius_mm: float = 2.0
    smoothing_mm: float = 3.0
    slice_step_mm: float = 0.0   # heatmap on slices this far apart (0: every slice); the
    cost: PathCost = PathCost()  # optimal path bridges the slices in between
    refine: bool = True          # a candidate's position: its component's centre of mass
    thick_smoothing: bool = True  # raise the smoothing towards a slice on thick slices
    coarse_step_mm: float = 40.0  # CNN1 on whole slices this far apart first (0: all whole)
    window_mm: float = 64.0      # ... then on squares this wide around their path

    def slices(self, nz: int, dz: float) -> np.ndarray:
        """Indices of the slices that get a heatmap (always the first and the last)."""
        step = max(1, int(round(self.slice_step_mm / dz))) if self.slice_step_mm > 0 else 1
        return np.unique(np.r_[np.arange(0, nz, step), nz - 1])

    def passes(self, nz: int, dz: float) -> tuple[np.ndarray, np.ndarray]:
        """The slices of :meth:`slices` split in two: those whose whole slice gets a heatmap
        (``coarse_step_mm`` apart, the first and the last always among them) and the others,
        whose heatmap covers a window around the path through the first."""
        ks = self.slices(nz, dz)
        between = max(self.slice_step_mm, dz)
        every = int(round(self.coarse_step_mm / between)) if self.coarse_step_mm > 0 else 1
        if every <= 1:
            return ks, ks[:0]
        whole = np.zeros(len(ks), bool)
        whole[::every] = True
        whole[-1] = True
        return ks[whole], ks[~whole]


@dataclass(frozen=True)
class Centerline:
    """One point per axial slice of an RPI grid: voxel indices (x, y) and world mm."""
    voxels: np.ndarray     # (Z, 2) float in-plane voxel coordinates; NaN: no cord found at all
    detected: np.ndarray   # (Z,) bool: the slice's point was chosen (not interpolated)
    affine: np.ndarray     # the RPI grid's affine

    @property
    def found(self) -> bool:
        return bool(self.detected.any())

    def world(self) -> np.ndarray:
        """(Z, 3) world coordinates in mm (x, y, z of the scanner's RAS+ frame)."""
        k = np.arange(len(self.voxels), dtype=float)
        ijk = np.column_stack([self.voxels, k, np.ones_like(k)])
        return (self.affine @ ijk.T).T[:, :3]


def slice_candidates(heat: np.ndarray, spacing: tuple[float, float],
                     options: CenterlineOptions) -> tuple[np.ndarray, np.ndarray]:
    """Candidates of one axial slice: (n, 2) voxel positions and (n, ) scores, best first.
    A component's position is its deepest voxel; where several are as deep, the one nearest to
    their centre (a ridge of equal depth gives its middle, not one end, and the position is
    always one of the deepest voxels, even when they lie in two lobes). Computed
    inside the bounding box of the thresholded heatmap grown by one voxel: every voxel
    outside it is background, so the distance map there is that of the whole slice (the
    nearest background voxel of a voxel inside is never beyond the box's rim)."""
    above = heat > options.threshold
    box = bounding_box(above, margin=1)
    if box is None:
        return np.zeros((0, 2)), np.zeros(0)
    labels, n = ndimage.label(above[box])
    depth = ndimage.distance_transform_edt(labels > 0, sampling=spacing)
    peaks, deepest, mean_p = np.zeros((n, 2)), np.zeros(n), np.zeros(n)
    for i, part in enumerate(ndimage.find_objects(labels)):
        own = labels[part] == i + 1
        inside = np.where(own, depth[part], -1.0)
        deepest[i] = inside.max()
        tied = np.argwhere(inside == deepest[i])
        at = tied[np.argmin(((tied - tied.mean(axis=0)) ** 2).sum(axis=1))]
        if options.refine:
            at = _centre_of_mass_in(heat[box][part], own, at)
        peaks[i] = at + [b.start + p.start for b, p in zip(box, part, strict=True)]
        mean_p[i] = float(heat[box][part][own].mean(dtype=np.float64))
    scores = mean_p * np.minimum(1.0, deepest / options.cord_radius_mm)
    order = np.argsort(-scores, kind="stable")[:options.max_candidates]
    return peaks[order], scores[order]


def _centre_of_mass_in(heat: np.ndarray, own: np.ndarray, deepest: np.ndarray) -> np.ndarray:
    """The heatmap-weighted centre of mass of a component (sub-voxel), or its deepest voxel
    when the centre of mass falls outside it (a bent or two-lobed component)."""
    weights = np.where(own, heat, 0.0).astype(np.float64)
    centre = np.array(ndimage.center_of_mass(weights))
    inside = np.round(centre).astype(int)
    if np.all((inside >= 0) & (inside < own.shape)) and own[tuple(inside)]:
        return centre
    return deepest.astype(float)


def centerline_from_heatmap(heat: np.ndarray, grid: Image,
                            options: CenterlineOptions = CenterlineOptions()) -> Centerline:
    """The optimal smooth centerline of an RPI heatmap on ``grid`` (its affine and spacing)."""
    spacing = np.asarray(grid.spacing, dtype=float)
    cands = [slice_candidates(heat[:, :, k], tuple(spacing[:2]), options)
             for k in range(heat.shape[2])]
    return centerline_from_candidates(cands, grid.affine, options)


def centerline_from_candidates(cands: list[tuple[np.ndarray, np.ndarray]], affine: np.ndarray,
                               options: CenterlineOptions = CenterlineOptions()) -> Centerline:
    """The optimal smooth centerline through per-slice candidates (:func:`slice_candidates`
    of every axial slice of the RPI grid with this ``affine``; empty for slices without a
    heatmap)."""
    spacing = spacing_from_affine(affine)
    nz = len(cands)
    positions = [c[0] * spacing[:2] for c in cands]
    choice = optimal_path(positions, [c[1] for c in cands], np.arange(nz) * spacing[2],
                          options.cost)
    chosen = np.array([c >= 0 for c in choice])
    voxels = np.full((nz, 2), np.nan)
    if chosen.any():
        for k in np.flatnonzero(chosen):
            voxels[k] = cands[k][0][choice[k]]
        voxels = _fill(voxels, chosen)
        smoothing = _smoothing_mm(options.smoothing_mm, spacing[2]) if \
            options.thick_smoothing else options.smoothing_mm
        sigma = smoothing / spacing[2]
        if sigma > 0:
            voxels = ndimage.gaussian_filter1d(voxels, sigma, axis=0, mode="nearest")
    return Centerline(voxels, chosen, np.array(affine, dtype=float))


def _smoothing_mm(smoothing_mm: float, dz: float) -> float:
    """The S–I smoothing of the centerline: ``smoothing_mm``, raised towards one slice (at most
    twice ``smoothing_mm``) on thick slices, whose points are as noisy as thin slices' but
    fewer (measured on 5 mm slices: tests/integration/test_stitch_straighten_real.py)."""
    if smoothing_mm <= 0:
        return 0.0
    return max(smoothing_mm, min(dz, 2 * smoothing_mm))


def _fill(points: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Linear interpolation over unknown slices, constant beyond the first/last known one."""
    k = np.arange(len(points))
    return np.column_stack([np.interp(k, k[known], points[known, a]) for a in range(2)])


def intensity_heatmap(image: np.ndarray, spacing, blob_radius_mm: float = 3.5) -> np.ndarray:
    """Baseline heatmap without a CNN: per axial slice, the magnitude of a Laplacian-of-
    Gaussian at the cord's scale (σ = radius/√2), scaled to [0, 1] by the volume's 99.9th
    percentile. The cord is the blob of that size most contrasted with its surroundings
    (dark in bright CSF on T2w, bright in dark CSF on T1w)."""
    sigma = [blob_radius_mm / np.sqrt(2) / s for s in spacing[:2]]
    data = np.asarray(image, dtype=np.float32)
    response = np.stack([np.abs(ndimage.gaussian_laplace(data[:, :, k], sigma, mode="nearest"))
                         for k in range(data.shape[2])], axis=2)
    for axis, s in enumerate(sigma):  # no blob is centred on the field of view's edge
        band = min(int(np.ceil(2 * s)), data.shape[axis] // 4)
        index = [slice(None)] * 3
        index[axis] = np.r_[0:band, data.shape[axis] - band:data.shape[axis]]
        response[tuple(index)] = 0
    top = float(np.percentile(response, 99.9)) or 1.0
    return np.clip(response / top, 0, 1)


def centerline_mask(centerline: Centerline, like: Image) -> np.ndarray:
    """A mask on ``like``'s grid (any orientation) with one voxel per centerline point."""
    mask = np.zeros(like.shape, np.uint8)
    points = centerline.world()[~np.isnan(centerline.voxels).any(1)]
    if len(points) == 0:
        return mask
    ijk = (np.linalg.inv(like.affine) @ np.column_stack([points, np.ones(len(points))]).T)
    ijk = np.round(ijk[:3].T).astype(int)
    inside = np.all((ijk >= 0) & (ijk < np.asarray(like.shape)), axis=1)
    mask[tuple(ijk[inside].T)] = 1
    return mask
