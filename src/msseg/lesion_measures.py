"""Per-lesion measures relative to the cord, after the definitions of SCT's
``sct_analyze_lesion`` (SCT 7.4; the facts were read from its documentation and code, the
code is msseg's). Every measure is taken on the part of the lesion inside the cord mask (cord
voxels > 0), in RPI; the definitions are in the design notes and docs/how-to/morphometry.md.

Design notes: docs/explanation/design-notes.md#msseglesion_measures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from msseg.morphometry import centerline_slopes

SMOOTH = 20.0      # sct_analyze_lesion's centerline: ParamCenterline's default smoothing
WINDOW = 2         # axial slices either side of the largest lesion's centre of mass
COLUMNS = ("volume_in_cord_mm3", "length_mm", "width_mm", "max_equivalent_diameter_mm",
           "max_axial_damage_ratio", "midsagittal_slice", "midsagittal_length_mm",
           "midsagittal_width_mm", "dorsal_bridge_mm", "ventral_bridge_mm", "total_bridge_mm",
           "dorsal_bridge_ratio_pct", "ventral_bridge_ratio_pct")


@dataclass(frozen=True)
class CordAngles:
    """Per RPI axial slice: cos of the cord's tilt (3D and on the sagittal plane)."""

    cos3d: np.ndarray
    cos_sagittal: np.ndarray


def cord_angles(cord: np.ndarray, spacing: tuple[float, float, float],
                spanned: int | None = None) -> CordAngles:
    """The angles of the module docstring at every slice of ``cord`` (RPI, boolean);
    ``spanned``: the image's number of axial slices when ``cord`` is a crop of it."""
    px, py, pz = spacing
    slopes = centerline_slopes(cord, pz, SMOOTH, every_slice=True, spanned=spanned)
    dx = np.array([slopes[k][0] for k in range(cord.shape[2])]) * px
    dy = np.array([slopes[k][1] for k in range(cord.shape[2])]) * py
    return CordAngles(cos3d=pz / np.sqrt(dx ** 2 + dy ** 2 + pz ** 2),
                      cos_sagittal=pz / np.sqrt(dy ** 2 + pz ** 2))


def midsagittal_position(labels: np.ndarray, cord: np.ndarray, z_offset: int = 0) -> float:
    """x_m of the module docstring (RPI voxels, NaN when no lesion lies in the cord):
    ``labels`` holds the in-cord lesion labels (0 = none); ``z_offset``: the RPI index of
    the arrays' first axial slice in the whole image, where the centre is rounded (Python's
    ``round``, half to even, as SCT)."""
    from scipy.ndimage import center_of_mass

    ids, counts = np.unique(labels[labels > 0], return_counts=True)
    if ids.size == 0:
        return float("nan")
    largest = labels == ids[int(np.argmax(counts))]
    z_centre = int(round(center_of_mass(largest)[2] + z_offset)) - z_offset
    window = range(max(z_centre - WINDOW, 0), min(z_centre + WINDOW + 1, cord.shape[2]))
    xs = [center_of_mass(cord[:, :, z])[0] for z in window if cord[:, :, z].any()]
    return float(np.mean(xs)) if xs else float("nan")


def lesion_measures(labels: np.ndarray, cord: np.ndarray, spacing: tuple[float, float, float],
                    spanned: int | None = None, z_offset: int = 0) -> pd.DataFrame:
    """One row per label 1…max of ``labels`` (RPI lesion labels, 0 = background), the columns
    of :data:`COLUMNS`, against ``cord`` (RPI, same grid; voxels > 0 are cord). When the
    arrays are a crop of an image: ``spanned``, its number of axial slices, and ``z_offset``,
    the RPI index of the crop's first axial slice in it (the same numbers as on the whole
    image)."""
    cord = cord > 0
    inside = np.where(cord, labels, 0)
    angles = cord_angles(cord, spacing, spanned) if cord.any() else None
    x_m = midsagittal_position(inside, cord, z_offset)
    rows = []
    for i in range(1, int(labels.max(initial=0)) + 1):
        lesion = inside == i
        if angles is None or not lesion.any():
            rows.append({"lesion_id": i, **dict.fromkeys(COLUMNS, float("nan")),
                         "volume_in_cord_mm3": 0.0})
            continue
        rows.append({"lesion_id": i, **_one_lesion(lesion, cord, spacing, angles, x_m)})
    return pd.DataFrame(rows, columns=["lesion_id", *COLUMNS])


def _one_lesion(lesion: np.ndarray, cord: np.ndarray, spacing: tuple[float, float, float],
                angles: CordAngles, x_m: float) -> dict[str, float]:
    px, py, pz = spacing
    per_slice = lesion.sum(axis=(0, 1))
    zs = np.flatnonzero(per_slice)
    cord_per_slice = cord[:, :, zs].sum(axis=(0, 1))
    extents = [np.flatnonzero(lesion[:, :, z].any(axis=0)) for z in zs]
    out = {
        "volume_in_cord_mm3": float(per_slice.sum()) * px * py * pz,
        "length_mm": float(np.sum(pz / angles.cos3d[zs])),
        "width_mm": max(float(e[-1] - e[0] + 1) * py * angles.cos_sagittal[z]
                        for e, z in zip(extents, zs, strict=True)),
        "max_equivalent_diameter_mm": 2 * math.sqrt(
            float(np.max(per_slice[zs] * angles.cos3d[zs] * px * py)) / math.pi),
        "max_axial_damage_ratio": float(np.max((per_slice[zs] * px * py)
                                               / (cord_per_slice * px * py))),
        "midsagittal_slice": x_m,
    }
    out.update(_midsagittal(lesion, spacing, angles, x_m))
    out.update(_bridges(lesion, cord, zs, spacing, angles, x_m))
    return out


def _mix(a, b, x_m: float):
    f = x_m - math.floor(x_m)
    return (1 - f) * a + f * b


def _midsagittal(lesion: np.ndarray, spacing, angles: CordAngles, x_m: float
                 ) -> dict[str, float]:
    _, py, pz = spacing
    s1, s2 = math.floor(x_m), math.ceil(x_m)
    mixed = _mix(lesion[s1].astype(np.float64), lesion[s2].astype(np.float64), x_m)  # (AP, SI)
    length, width = 0.0, 0.0
    for z in np.flatnonzero(mixed.any(axis=0)):
        column = mixed[:, z][mixed[:, z] > 0]
        length += float(column.mean()) * pz / angles.cos_sagittal[z]
        width = max(width, float(column.sum()) * py * angles.cos_sagittal[z])
    return {"midsagittal_length_mm": length, "midsagittal_width_mm": width}


def _bridges(lesion: np.ndarray, cord: np.ndarray, zs: np.ndarray, spacing,
             angles: CordAngles, x_m: float) -> dict[str, float]:
    """Dorsal, ventral and total midsagittal tissue bridges (mm) and their ratios (%)."""
    py = spacing[1]
    s1, s2 = math.floor(x_m), math.ceil(x_m)
    on_slice = [z for z in zs if lesion[s1, :, z].any() or lesion[s2, :, z].any()]
    if not on_slice:                         # parasagittal: the cord's AP diameter as proxy
        widths = [_mix(cord[s1, :, z].sum(), cord[s2, :, z].sum(), x_m) * py
                  * angles.cos_sagittal[z] for z in zs
                  if cord[s1, :, z].any() and cord[s2, :, z].any()]
        total = float(min(widths)) if widths else float("nan")
        dorsal = ventral = total / 2
    else:
        dorsal = min(_mixed_bridge(lesion, cord, z, s1, s2, x_m, 0) * py
                     * angles.cos_sagittal[z] for z in on_slice)
        ventral = min(_mixed_bridge(lesion, cord, z, s1, s2, x_m, 1) * py
                      * angles.cos_sagittal[z] for z in on_slice)
        dorsal, ventral = float(dorsal), float(ventral)
        total = dorsal + ventral
    if math.isnan(total):
        ratios = (float("nan"), float("nan"))
    elif total > 0:
        ratios = (dorsal / total * 100, ventral / total * 100)
    else:
        ratios = (0.0, 0.0)
    return {"dorsal_bridge_mm": dorsal, "ventral_bridge_mm": ventral, "total_bridge_mm": total,
            "dorsal_bridge_ratio_pct": ratios[0], "ventral_bridge_ratio_pct": ratios[1]}


def _mixed_bridge(lesion: np.ndarray, cord: np.ndarray, z: int, s1: int, s2: int, x_m: float,
                  side: int) -> float:
    """The dorsal (side 0) or ventral (side 1) bridge in voxels at axial slice z, mixed between
    sagittal slices s1 and s2 (a slice without lesion at z takes the other's value)."""
    values = [bridge_voxels(lesion[s, :, z], cord[s, :, z])[side] for s in (s1, s2)]
    a = values[0] if values[0] is not None else values[1]
    b = values[1] if values[1] is not None else values[0]
    return float(_mix(a, b, x_m))


def bridge_voxels(lesion_column: np.ndarray, cord_column: np.ndarray
                  ) -> tuple[int | None, int | None]:
    """(dorsal, ventral) bridge in voxels along one AP column (RPI: index grows towards A):
    cord voxels behind the lesion's first voxel and in front of its last, at least 0; None
    when the column holds no lesion."""
    lesion_at = np.flatnonzero(lesion_column)
    if lesion_at.size == 0:
        return None, None
    cord_at = np.flatnonzero(cord_column)
    return (max(int(lesion_at[0] - cord_at[0]), 0), max(int(cord_at[-1] - lesion_at[-1]), 0))
