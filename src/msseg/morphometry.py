"""Cord morphometry per axial slice, after the definitions of SCT's ``sct_process_segmentation``
(SCT 7.4; the facts were read from its documentation and code, the code is msseg's).

Design notes: docs/explanation/design-notes.md#mssegmorphometry.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from msseg.errors import MssegError
from msseg.image import Image, same_grid
from msseg.preprocess.orient import to_rpi

NEAR_ZERO = 1e-6       # SCT's threshold for "empty" (resampling turns 0 into ~1e-16)
PIXEL_MM = 0.1         # the fixed in-plane resolution every slice is measured at
SMOOTH = 30.0          # sct_process_segmentation's default -centerline-smooth
PAD = 3                # voxels kept around the cord's box before resampling
AP_EXTENT_PX = 30      # RL extent (pixels of 0.1 mm) over which the AP profile is averaged
MEASURES = ("area", "angle_AP", "angle_RL", "diameter_AP", "diameter_AP_ellipse", "diameter_RL",
            "length_anterior", "length_posterior", "eccentricity", "orientation", "solidity",
            "length")


def slice_centres(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The axial slices holding a non-zero voxel of ``mask`` (RPI) and, per slice, the mean
    x and y of those voxels (SCT's per-slice centre of the mask, unweighted)."""
    x, y, z = np.nonzero(mask)
    zs = np.unique(z)
    return (zs, np.array([x[z == k].mean() for k in zs]),
            np.array([y[z == k].mean() for k in zs]))


def centerline_slopes(mask: np.ndarray, dz: float, smooth: float = SMOOTH,
                      every_slice: bool = False, spanned: int | None = None
                      ) -> dict[int, tuple[float, float]]:
    """dx/dz and dy/dz (voxels per slice) at every slice from the first to the last holding a
    non-zero voxel of ``mask`` (RPI), from SCT's smoothing spline through the per-slice mean
    voxel positions. ``every_slice``: at every slice of the array instead (the spline
    extended beyond the mask, as SCT's ``minmax=False``), the smoothing's density counted
    over ``spanned`` slices (default: the slices the output covers)."""
    from scipy.interpolate import splev, splrep

    zs, xm, ym = slice_centres(mask)
    if zs.size == 0:
        return {}
    zref = np.arange(mask.shape[2]) if every_slice else np.arange(zs.min(), zs.max() + 1)
    degree = 3 if len(zs) > 3 else 1
    s = (len(zs) / (spanned or len(zref))) ** 2 * smooth * dz / 3.0
    dx = splev(zref, splrep(zs, xm, s=s, k=degree), der=1)
    dy = splev(zref, splrep(zs, ym, s=s, k=degree), der=1)
    return {int(k): (float(a), float(b)) for k, a, b in zip(zref, dx, dy, strict=True)}


def tilt_angles(slope: tuple[float, float], spacing: tuple[float, float, float]
                ) -> tuple[float, float]:
    """(angle_AP, angle_RL) in radians between the slice's normal and the cord's tangent."""
    tx, ty, tz = slope[0] * spacing[0], slope[1] * spacing[1], spacing[2]
    return math.atan2(tx, tz), math.atan2(ty, tz)


def corrected_slice(patch: np.ndarray, angle_ap: float, angle_rl: float) -> np.ndarray:
    """The slice shrunk by cos(angle_AP) along x and cos(angle_RL) along y (towards its first
    voxel, linear interpolation, same shape): its area becomes the cross-section's."""
    from skimage import transform

    scale = transform.AffineTransform(scale=(np.cos(angle_rl), np.cos(angle_ap)))
    return transform.warp(patch.astype(np.float64), scale.inverse, output_shape=patch.shape,
                          order=1)


def slice_shape(patch: np.ndarray, spacing_xy: tuple[float, float]) -> dict[str, float] | None:
    """The shape measures of one (possibly soft) axial slice of a cord mask (module docstring);
    None when the slice holds no cord."""
    from scipy.ndimage import zoom
    from skimage import measure

    if np.all(patch < NEAR_ZERO):
        return None
    seg = ((patch - patch.min()) / (patch.max() - patch.min())).astype(np.float64)
    inside = (seg > NEAR_ZERO).astype(np.uint8)
    r0, c0, r1, c1 = measure.regionprops(inside)[0].bbox
    crop = seg[max(r0 - PAD, 0):min(r1 + PAD, seg.shape[0]),
               max(c0 - PAD, 0):min(c1 + PAD, seg.shape[1])]
    fine = zoom(crop, zoom=(spacing_xy[0] / PIXEL_MM, spacing_xy[1] / PIXEL_MM), order=1,
                mode="grid-constant", grid_mode=True)
    region = measure.regionprops((fine > 0.5).astype(np.uint8), intensity_image=fine)[0]
    folded = _folded_degrees(region.orientation)
    major, minor = region.axis_major_length * PIXEL_MM, region.axis_minor_length * PIXEL_MM
    ap_ellipse, rl = (minor, major) if folded < 45.0 else (major, minor)
    posterior, anterior = _ap_profile(_rotated(fine, -region.orientation))
    return {"area": float(fine.sum()) * PIXEL_MM * PIXEL_MM,
            "diameter_AP": posterior + anterior, "diameter_AP_ellipse": ap_ellipse,
            "diameter_RL": rl, "length_anterior": anterior, "length_posterior": posterior,
            "eccentricity": float(region.eccentricity),
            "orientation": math.degrees(region.orientation), "solidity": float(region.solidity)}


def _folded_degrees(orientation: float) -> float:
    """An ellipse orientation (radians) folded into [0°, 90°] (how far from the RL axis)."""
    angle = math.degrees(orientation)
    for low, high in ((360.0, 540.0), (180.0, 360.0), (90.0, 180.0)):
        if low <= abs(angle) <= high:
            angle = high - abs(angle)
    return abs(angle)


def _centre(values: np.ndarray) -> np.ndarray:
    """The mean (row, column) of the pixels that round to non-zero (value > 0.5)."""
    return np.argwhere(values.round().astype(int)).mean(axis=0)


def _rotated(values: np.ndarray, angle: float) -> np.ndarray:
    """``values`` rotated by ``angle`` (radians) about the centre of its pixels > 0.5 (linear
    interpolation, 0 outside)."""
    from scipy.ndimage import map_coordinates

    r0, c0 = _centre(values)
    rows, cols = np.mgrid[0:values.shape[0], 0:values.shape[1]]
    dc, dr = cols - c0, rows - r0
    c = dc * np.cos(angle) - dr * np.sin(angle) + c0
    r = dc * np.sin(angle) + dr * np.cos(angle) + r0
    return map_coordinates(values, [r.ravel(), c.ravel()], order=1).reshape(values.shape)


def _ap_profile(rotated: np.ndarray) -> tuple[float, float]:
    """(posterior, anterior) lengths in mm: the AP profile averaged over 3 mm of RL around the
    centre of mass, split at the centre of mass (NaN when nothing is left above 0.5)."""
    inside = (rotated > 0.5).astype(np.uint8)
    if not inside.any():
        return float("nan"), float("nan")
    rl, ap = (round(float(v)) for v in _centre(inside))
    rows = np.arange(rl - AP_EXTENT_PX // 2, rl + AP_EXTENT_PX // 2)
    rows = rows[(rows >= 0) & (rows < rotated.shape[0])]
    profile = rotated[rows, :].mean(axis=0)
    return float(profile[:ap].sum()) * PIXEL_MM, float(profile[ap:].sum()) * PIXEL_MM


def cord_morphometry(mask: Image, angle_correction: bool = True) -> pd.DataFrame:
    """The cord's measures on every axial slice holding cord, as SCT computes them.

    Args:
        mask: a cord mask, binary or soft (values in [0, 1]), any orientation.
        angle_correction: project each slice onto the plane across the cord.

    Returns:
        One row per slice (RPI index, inferior first) with the measures of :data:`MEASURES`;
        no row for an empty mask.
    """
    rpi = to_rpi(mask)
    data = np.asarray(rpi.data, dtype=np.float64)
    if not np.isfinite(data).all():
        raise MssegError("cord mask holds NaN or infinite values")
    spacing = tuple(float(s) for s in rpi.spacing)
    present = np.flatnonzero((data > NEAR_ZERO).any(axis=(0, 1)))
    if present.size == 0:
        return pd.DataFrame(columns=["slice", *MEASURES])
    slopes = centerline_slopes(data != 0, spacing[2]) if angle_correction else {}
    rows = []
    for k in range(present.min(), present.max() + 1):
        patch = data[:, :, k]
        angle_ap = angle_rl = 0.0
        if angle_correction:
            angle_ap, angle_rl = tilt_angles(slopes[k], spacing)
            patch = corrected_slice(patch, angle_ap, angle_rl)
        shape = slice_shape(patch, spacing[:2])
        if shape is None:
            continue
        rows.append({"slice": k, **shape, "angle_AP": math.degrees(angle_ap),
                     "angle_RL": math.degrees(angle_rl),
                     "length": spacing[2] / (math.cos(angle_ap) * math.cos(angle_rl))})
    return pd.DataFrame(rows, columns=["slice", *MEASURES])


def aggregate(per_slice: pd.DataFrame) -> dict[str, float]:
    """Aggregate per-slice measures as ``sct_process_segmentation`` does without ``-perslice``.

    Args:
        per_slice: rows of :func:`cord_morphometry` (all slices, or those of a level).

    Returns:
        ``mean_<m>`` and ``std_<m>`` (population standard deviation) of every measure over the
        slices that have one, ``sum_length``, and ``slices`` ("first:last").
    """
    out: dict[str, float | str] = {}
    if len(per_slice):
        out["slices"] = f"{int(per_slice.slice.min())}:{int(per_slice.slice.max())}"
    for name in MEASURES:
        if name == "length":
            continue
        values = per_slice[name].to_numpy(dtype=float)
        values = values[np.isfinite(values)]
        out[f"mean_{name}"] = float(values.mean()) if values.size else float("nan")
        out[f"std_{name}"] = float(values.std()) if values.size else float("nan")
    out["sum_length"] = float(per_slice["length"].sum()) if len(per_slice) else 0.0
    return out


def with_levels(per_slice: pd.DataFrame, mask: Image, levels: Image,
                spinal: bool = False) -> pd.DataFrame:
    """``per_slice`` (:func:`cord_morphometry` of ``mask``) with ``vert_level`` and
    ``vert_level_name`` (0 / ``unknown`` where the map labels nothing) and, with ``spinal``,
    ``spinal_level`` and ``spinal_level_name``. ``levels`` must be on ``mask``'s grid."""
    from msseg.levels import (
        check_same_grid,
        level_name,
        slice_levels,
        spinal_level_name,
        spinal_levels,
    )

    check_same_grid(levels, mask)
    vertebral = slice_levels(levels, rule="mean")
    at = per_slice["slice"].to_numpy(dtype=int)
    out = per_slice.assign(vert_level=vertebral[at],
                           vert_level_name=[level_name(int(v)) for v in vertebral[at]])
    if spinal:
        segments = spinal_levels(vertebral)
        out = out.assign(spinal_level=segments[at],
                         spinal_level_name=[spinal_level_name(int(v)) for v in segments[at]])
    return out


def per_level(per_slice: pd.DataFrame, by: str = "vert_level",
              only: list[int] | None = None) -> pd.DataFrame:
    """Aggregate per level, as ``sct_process_segmentation -perlevel 1`` does.

    Args:
        per_slice: rows of :func:`with_levels`.
        by: ``vert_level`` or ``spinal_level``.
        only: these levels (SCT's ``-vert``; a level without a slice is left out); default
            every known level.

    Returns:
        One row per level, superior first (SCT lists them inferior first): ``level`` (its
        name), the level number and :func:`aggregate` over its slices.
    """
    names = per_slice.set_index(by)[f"{by}_name"].to_dict() if len(per_slice) else {}
    present = sorted({int(v) for v in per_slice[by] if v > 0})
    rows = []
    for level in (present if only is None else [v for v in only if v in present]):
        rows.append({"level": names[level], by: level,
                     **aggregate(per_slice[per_slice[by] == level])})
    return pd.DataFrame(rows)


# CSA normalisation models of SCT's ``sct_process_segmentation -normalize`` (its
# data/csa_normalization_models, made with github.com/sct-pipeline/ukbiobank-spinalcord-csa
# from T1w brain images of 804 healthy UK Biobank participants aged 48–80): per predictor,
# (coefficient, cohort mean). ``inter-BV_sex`` is brain-volume × sex.
NORMALISATION_MODELS = {
    ("brain-volume", "sex"): {
        "brain-volume": (2.3741962085478625e-05, 1156171.0708955224),
        "sex": (-15.00753582193219, 0.43656716417910446),
        "inter-BV_sex": (1.2389409865349374e-05, 530335.0410447761)},
    ("brain-volume", "sex", "thalamus-volume"): {
        "sex": (-15.000011679788948, 0.43656716417910446),
        "brain-volume": (2.4534871223492782e-06, 1156171.0708955224),
        "thalamus-volume": (0.001980035083542038, 15265.63184079602),
        "inter-BV_sex": (1.2553560383488494e-05, 530335.0410447761)},
}


def normalised_csa(area: float, subject: dict[str, float]) -> float:
    """CSA (mm²) normalised to the UK Biobank cohort: area + Σ coefficient × (cohort mean −
    subject's value) over the model's predictors (SCT's ``-normalize``). ``subject``: ``sex``
    (female 0, male 1), ``brain-volume`` (mm³) and optionally ``thalamus-volume`` (mm³)."""
    model = NORMALISATION_MODELS.get(tuple(sorted(subject)))
    if model is None:
        raise MssegError("--normalize takes sex and brain-volume, or sex, brain-volume and "
                         f"thalamus-volume (got {', '.join(sorted(subject)) or 'nothing'})")
    if subject["sex"] not in (0, 1):
        raise MssegError(f"--normalize sex {subject['sex']:g}: female 0, male 1")
    values = {**subject, "inter-BV_sex": subject["brain-volume"] * subject["sex"]}
    for predictor, (coefficient, mean) in model.items():
        area = area + coefficient * (mean - values[predictor])
    return area


PMJ_SMOOTH_MM = 50.0   # SCT's -pmj centerline: linear interpolation, Hanning window of 50 mm


def pmj_distances(mask: Image, pmj: Image) -> dict[int, float]:
    """RPI axial slice -> distance (mm) from the pontomedullary junction along the cord, as
    ``sct_process_segmentation -pmj``: the mask and the PMJ label together give the per-slice
    mean voxel positions from the lowest to the highest slice holding either; x(z) and y(z)
    are interpolated linearly over every slice between, smoothed by a Hanning window of
    ``round_up_to_odd(50 mm / dz)`` slices (the signal extended by central symmetry at both
    ends), turned into world points, and the distance is the length of the polyline from the
    top (the PMJ's end) down to the slice."""
    if not same_grid(pmj, mask):
        raise MssegError("the PMJ label is not on the cord mask's grid")
    rpi, label = to_rpi(mask), to_rpi(pmj)
    both = np.asarray(rpi.data, np.float64) + np.asarray(label.data, np.float64)
    if not (label.data > 0).any():
        raise MssegError("the PMJ label is empty")
    zs, xm, ym = slice_centres(both)
    zref = np.arange(zs.min(), zs.max() + 1)
    window = int(np.ceil(PMJ_SMOOTH_MM / rpi.spacing[2]) // 2 * 2 + 1)
    xs = _hanning_smoothed(np.interp(zref, zs, xm), window)
    ys = _hanning_smoothed(np.interp(zref, zs, ym), window)
    world = np.column_stack([xs, ys, zref, np.ones(len(zref))]) @ rpi.affine.T
    steps = np.linalg.norm(np.diff(world[:, :3], axis=0), axis=1)
    from_top = np.concatenate([np.cumsum(steps[::-1])[::-1], [0.0]])
    return {int(k): float(d) for k, d in zip(zref, from_top, strict=True)}


def _hanning_smoothed(values: np.ndarray, window: int) -> np.ndarray:
    """``values`` convolved with a normalised Hanning window, the ends extended by central
    symmetry (a window longer than the signal shrinks to it; under 3: unchanged)."""
    window = min(window, values.size)
    if window < 3:
        return values
    padded = np.concatenate([2 * values[0] - values[window - 1:0:-1], values,
                             2 * values[-1] - values[-2:-window - 1:-1]])
    weights = np.hanning(window)
    smooth = np.convolve(weights / weights.sum(), padded, mode="valid")
    return smooth[int(np.ceil(window / 2 - 1)):-int(np.floor(window / 2))]


def pmj_slices(distances: dict[int, float], distance: float, extent: float) -> list[int]:
    """The slices of ``extent`` mm centred ``distance`` mm below the PMJ (SCT's
    ``-pmj-distance`` / ``-pmj-extent``): from the slice nearest ``distance + extent/2`` up to,
    not including, the slice nearest ``distance - extent/2``."""
    zs = np.array(sorted(distances))
    lengths = np.array([distances[k] for k in zs])
    if not lengths.min() <= distance <= lengths.max():
        raise MssegError(f"--pmj-distance {distance:g} mm is outside the cord's "
                         f"{lengths.min():.1f}–{lengths.max():.1f} mm from the PMJ")
    low = int(zs[np.argmin(np.abs(lengths - distance - extent / 2))])
    high = int(zs[np.argmin(np.abs(lengths - distance + extent / 2))])
    return list(range(low, high))
