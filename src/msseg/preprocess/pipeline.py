"""Apply a :class:`~msseg.preprocess.plan.Plan`: an `Image` -> network grid -> back.

Forward (:func:`preprocess_image`, used by training and inference alike): reorient to the plan's
voxel order (RPI), normalise the intensities with the statistics of the whole image (or the
training set's learnt landmarks / template, ``plan.intensity``), optionally crop to a voxel box,
resample to the plan's working spacing (in-plane only for 2D models; slices resized to the patch
for ``frame == "resize"``). A part of that volume around the cord (a box, axial slices, an
in-plane box of them) comes from :class:`NetworkGrid`, the grid worked out once per scan and
plan. Inverse (:func:`to_native`): network-grid values -> the input's own grid, voxel order and
header, zeros outside the box that was predicted.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np

from msseg.image import Image
from msseg.preprocess import intensity
from msseg.preprocess.orient import reorient, reorient_like
from msseg.preprocess.plan import Plan
from msseg.preprocess.resample import resample_to_grid, resample_to_spacing, resampled_grid


def zscore(data: np.ndarray) -> np.ndarray:
    """(x − mean) / std over all voxels, float32 out (C order)."""
    return _zscore_map(data)(data)


def _zscore_map(data: np.ndarray):
    """x -> (x − mean) / std with the mean and std of ``data``, summed in float64 a slab at a
    time (no full-size temporaries)."""
    data = np.asarray(data)
    slabs = [data[..., k:k + 16] for k in range(0, data.shape[-1], 16)] if data.ndim else [data]
    n = max(data.size, 1)
    mean = sum(float(s.sum(dtype=np.float64)) for s in slabs) / n
    var = sum(float(np.square(s.astype(np.float32) - np.float32(mean), dtype=np.float64).sum())
              for s in slabs) / n
    std = np.float32(max(np.sqrt(var), 1e-6))

    def apply(x: np.ndarray) -> np.ndarray:
        out = np.array(x, dtype=np.float32, order="C")
        out -= np.float32(mean)
        out /= std
        return out
    return apply


def working_spacing(image: Image, plan: Plan) -> tuple[float, float, float]:
    """Spacing of the network grid for this image: 2D models keep the slice thickness; with
    ``plan.frame == "resize"`` every axial slice is resized to exactly the patch size."""
    if plan.frame == "resize":
        return (*(n * s / p for n, s, p in zip(image.shape[:2], image.spacing[:2],
                                                plan.patch_size, strict=True)),
                image.spacing[2])
    if plan.dims == 2:
        return (*plan.target_spacing, image.spacing[2])
    return tuple(plan.target_spacing)


def normalize(data: np.ndarray, plan: Plan) -> np.ndarray:
    """Intensities as the model was trained: per-image z-score, min-max, Nyúl landmarks then
    the training set's z-score, or quantile mapping onto the training set's template."""
    return normalizer(data, plan)(data)


def normalizer(data: np.ndarray, plan: Plan):
    """The intensity map of :func:`normalize` with the statistics of ``data`` (the whole
    image), as a function that can be applied to any part of it (float32 out)."""
    if plan.normalization == "nyul":
        p = plan.intensity
        knots = intensity.knots(data, intensity.NYUL_PERCENTILES, intensity.EVERYWHERE)

        def nyul(x: np.ndarray) -> np.ndarray:
            standard = intensity.piecewise_map(x, knots, p["landmarks"], intensity.EVERYWHERE)
            standard -= np.float32(p["mean"])
            standard /= np.float32(max(p["std"], 1e-6))
            return standard
        return nyul
    if plan.normalization == "quantile":
        knots = intensity.knots(data, intensity.QUANTILE_PERCENTILES)
        return lambda x: intensity.piecewise_map(x, knots, plan.intensity["template"])
    if plan.normalization == "minmax":
        inside = data[data != 0]
        lo, hi = (float(inside.min()), float(inside.max())) if inside.size else (0.0, 1.0)
        return lambda x: intensity.piecewise_map(x, [lo, hi], [0.0, 1.0]) if hi > lo else (
            np.array(x, dtype=np.float32, order="C"))
    return _zscore_map(data)


def oriented(image: Image, plan: Plan, copy: bool = True) -> Image:
    """The image in the plan's voxel order (exact: axis permutation and flips; ``copy=False``:
    possibly a strided view of the input's data)."""
    return reorient(image, plan.orientation, copy=copy)


def preprocess_image(image: Image, plan: Plan, box: tuple[slice, ...] | None = None) -> Image:
    """Plan's voxel order -> intensities normalised (statistics of the whole image) ->
    optionally cropped to ``box`` (voxel slices of the reoriented image) -> resampled to the
    plan's working spacing."""
    rpi = oriented(image, plan, copy=False)    # normalize makes the one copy
    rpi = rpi.with_data(normalize(rpi.data, plan))
    if box is not None:
        rpi = rpi.crop(box)
    return resample_to_spacing(rpi, working_spacing(rpi, plan), order=1, reuse=True)


class NetworkGrid:
    """A plan's network grid for one image, worked out once and passed down: the image in the
    plan's voxel order (a view), the grid's shape and affine, and the intensity map with the
    whole image's statistics (computed on first use). Any part of the preprocessed volume —
    a box, axial slices, an in-plane box of them — is computed from the input voxels it needs
    only, onto the same sample points as :func:`preprocess_image`: a crop around the cord of a
    whole-spine volume costs what the crop costs (equal to the full computation up to float
    rounding of the sample positions; tested to 1e-5)."""

    def __init__(self, image: Image, plan: Plan):
        self.plan = plan
        self.rpi = oriented(image, plan, copy=False)
        self.shape, self.affine = resampled_grid(self.rpi, working_spacing(self.rpi, plan))

    @cached_property
    def normalize(self):
        return normalizer(self.rpi.data, self.plan)

    def box(self, box: tuple[slice, ...]) -> np.ndarray:
        """``preprocess_image(image, plan).data[box]`` (``box``: voxel slices of the grid)."""
        box = tuple(slice(*b.indices(n)[:2]) for b, n in zip(box, self.shape, strict=True))
        part = self.rpi.crop(_source_box(self.rpi, self.affine, box))
        part = part.with_data(self.normalize(part.data))
        return resample_to_grid(part, tuple(b.stop - b.start for b in box),
                                _shifted(self.affine, box), order=1, reuse=True).data

    def slices(self, ks: np.ndarray, box: tuple[slice, slice] | None = None) -> np.ndarray:
        """2D plans: axial slices ``ks`` of the grid (X, Y, len(ks)), or their in-plane ``box``
        (voxel slices of the grid, clipped to it)."""
        if self.plan.dims != 2 or self.plan.frame != "image":
            raise ValueError("slice-wise preprocessing is for 2D plans on the image grid")
        box = tuple(slice(*b.indices(n)[:2]) for b, n in
                    zip(box or (slice(None), slice(None)), self.shape[:2], strict=True))
        whole = (*box, slice(0, 1))
        xy = _source_box(self.rpi, self.affine, whole)[:2]
        source = self.rpi.crop((*xy, slice(0, self.rpi.shape[2])))
        part = Image(self.normalize(source.data[:, :, ks]), source.affine)
        size = tuple(b.stop - b.start for b in box)
        return resample_to_grid(part, (*size, len(ks)), _shifted(self.affine, whole),
                                reuse=True).data


def _source_box(rpi: Image, affine: np.ndarray, box: tuple[slice, ...]) -> tuple[slice, ...]:
    """The voxels of ``rpi`` that linear resampling onto ``box`` of the grid ``affine`` reads
    (one voxel more on each side)."""
    corners = np.array([[i, j, k, 1.0] for i in (box[0].start, box[0].stop - 1)
                        for j in (box[1].start, box[1].stop - 1)
                        for k in (box[2].start, box[2].stop - 1)])
    ijk = (np.linalg.inv(rpi.affine) @ affine @ corners.T)[:3].T
    lo = np.clip(np.floor(ijk.min(0)).astype(int) - 1, 0, rpi.shape)
    hi = np.clip(np.ceil(ijk.max(0)).astype(int) + 2, 0, rpi.shape)
    return tuple(slice(int(a), int(max(a + 1, b))) for a, b in zip(lo, hi, strict=True))


def _shifted(affine: np.ndarray, box: tuple[slice, ...]) -> np.ndarray:
    """The affine of the grid ``affine`` cropped to ``box``."""
    shift = np.eye(4)
    shift[:3, 3] = [b.start for b in box]
    return affine @ shift


def tube_box(points: np.ndarray, rpi: Image, plan: Plan, margin_mm: float = 5.0
             ) -> tuple[slice, ...]:
    """In-plane box of an RPI grid holding the centerline tube: the points' (n, 2 voxel
    indices) extent + half the patch + ``margin_mm``, all slices."""
    half_mm = np.asarray(plan.patch_size[:2]) * np.asarray(plan.target_spacing[:2]) / 2
    margin = np.ceil((half_mm + margin_mm) / np.asarray(rpi.spacing[:2])).astype(int)
    lo = np.maximum(np.floor(points.min(0)).astype(int) - margin, 0)
    hi = np.minimum(np.ceil(points.max(0)).astype(int) + margin + 1, rpi.shape[:2])
    return slice(lo[0], hi[0]), slice(lo[1], hi[1]), slice(None)


def covered_box(values: Image, rpi: Image) -> tuple[slice, ...]:
    """The voxel box of ``rpi`` whose centres lie inside the extent of the grid of
    ``values`` (any sub-box of a network grid; voxel edges at ±0.5)."""
    to_rpi = np.linalg.inv(rpi.affine) @ values.affine
    corners = np.array([[i, j, k, 1.0] for i in (-0.5, values.shape[0] - 0.5)
                        for j in (-0.5, values.shape[1] - 0.5)
                        for k in (-0.5, values.shape[2] - 0.5)])
    ijk = (to_rpi @ corners.T)[:3].T
    lo = np.clip(np.ceil(ijk.min(0) - 1e-4), 0, rpi.shape).astype(int)
    hi = np.clip(np.floor(ijk.max(0) + 1e-4) + 1, 0, rpi.shape).astype(int)
    return tuple(slice(int(a), int(max(a, b))) for a, b in zip(lo, hi, strict=True))


def to_native(values: Image, rpi: Image, image: Image, order: int = 1) -> Image:
    """Values on (a sub-box of) the network grid -> the input's reoriented grid ``rpi``,
    zeros outside the box they cover -> the input's own voxel order and header, clipped to
    [0, 1]. Only the covered box is computed and written: the rest of the output is
    untouched zero memory, so a whole-spine volume costs what its cord box costs."""
    box = covered_box(values, rpi)
    target = rpi.crop(box)
    full = np.zeros(rpi.shape, np.float32)
    if target.data.size:
        on_rpi = resample_to_grid(values, target.shape, target.affine, order=order).data
        full[box] = np.clip(on_rpi, 0, 1, out=on_rpi)
    return reorient_like(rpi.with_data(full), image, copy=False)   # a view of full
