"""Apply a :class:`~msseg.preprocess.plan.Plan`: an `Image` -> network grid -> back.

Forward (:func:`preprocess_image`, used by training and inference alike): reorient to the plan's
voxel order (RPI), normalise the intensities with the statistics of the whole image (or the
training set's learnt landmarks / template, ``plan.intensity``), optionally crop to a voxel box,
resample to the plan's working spacing (in-plane only for 2D models; slices resized to the patch
for ``frame == "resize"``). Inverse (:func:`to_native`): network-grid values -> the input's own
grid, voxel order and header, zeros outside the box that was predicted.
"""

from __future__ import annotations

import numpy as np

from msseg.image import Image
from msseg.preprocess import intensity
from msseg.preprocess.orient import reorient, reorient_like
from msseg.preprocess.plan import Plan
from msseg.preprocess.resample import resample_to_grid, resample_to_spacing


def zscore(data: np.ndarray) -> np.ndarray:
    data = data.astype(np.float32)
    return (data - data.mean()) / max(float(data.std()), 1e-6)


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
    if plan.normalization == "nyul":
        p = plan.intensity
        standard = intensity.apply_nyul(data, p["landmarks"], mask=np.ones(data.shape, bool))
        return ((standard - p["mean"]) / max(p["std"], 1e-6)).astype(np.float32)
    if plan.normalization == "quantile":
        return intensity.apply_quantile(data, plan.intensity["template"])
    if plan.normalization == "minmax":
        return intensity.minmax(data)
    return zscore(data)


def oriented(image: Image, plan: Plan) -> Image:
    """The image in the plan's voxel order (exact: axis permutation and flips)."""
    return reorient(image, plan.orientation)


def preprocess_image(image: Image, plan: Plan, box: tuple[slice, ...] | None = None) -> Image:
    """Plan's voxel order -> intensities normalised (statistics of the whole image) ->
    optionally cropped to ``box`` (voxel slices of the reoriented image) -> resampled to the
    plan's working spacing."""
    rpi = oriented(image, plan)
    rpi = rpi.with_data(normalize(rpi.data, plan))
    if box is not None:
        rpi = rpi.crop(box)
    return resample_to_spacing(rpi, working_spacing(rpi, plan), order=1)


def tube_box(points: np.ndarray, rpi: Image, plan: Plan, margin_mm: float = 5.0
             ) -> tuple[slice, ...]:
    """In-plane box of an RPI grid holding the centerline tube: the points' (n, 2 voxel
    indices) extent + half the patch + ``margin_mm``, all slices."""
    half_mm = np.asarray(plan.patch_size[:2]) * np.asarray(plan.target_spacing[:2]) / 2
    margin = np.ceil((half_mm + margin_mm) / np.asarray(rpi.spacing[:2])).astype(int)
    lo = np.maximum(np.floor(points.min(0)).astype(int) - margin, 0)
    hi = np.minimum(np.ceil(points.max(0)).astype(int) + margin + 1, rpi.shape[:2])
    return slice(lo[0], hi[0]), slice(lo[1], hi[1]), slice(None)


def to_native(values: Image, rpi: Image, image: Image, box: tuple[slice, ...] | None = None,
              order: int = 1) -> Image:
    """Values on the network grid -> the input's reoriented grid ``rpi`` (or its ``box``,
    put back into zeros) -> the input's own voxel order and header, clipped to [0, 1]."""
    target = rpi if box is None else rpi.crop(box)
    on_rpi = resample_to_grid(values, target.shape, target.affine, order=order).data
    if box is not None:
        full = np.zeros(rpi.shape, np.float32)
        full[box] = on_rpi
        on_rpi = full
    native = reorient_like(rpi.with_data(on_rpi), image)
    return native.with_data(np.clip(native.data, 0, 1).astype(np.float32))
