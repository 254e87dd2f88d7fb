"""Lesions per vertebral level, from a level map in the image's space.

Design notes: docs/explanation/design-notes.md#msseglevels.
"""

from __future__ import annotations

import cc3d
import numpy as np
import pandas as pd

from msseg.errors import MssegError
from msseg.image import Image, same_grid, si_axis
from msseg.preprocess.orient import to_rpi

POINT_MAX_VOXELS = 27
NOT_DISC = 50
LEVEL_COLUMNS = ("vert_level", "vert_level_name", "level_shares")


def level_name(level: int) -> str:
    """1 -> C1, 8 -> T1, 20 -> L1, 25 -> S1, 0 -> unknown."""
    for first, prefix, count in ((1, "C", 7), (8, "T", 12), (20, "L", 5), (25, "S", 5)):
        if first <= level < first + count:
            return f"{prefix}{level - first + 1}"
    return "unknown" if level == 0 else f"level {level}"


def is_point_map(data: np.ndarray) -> bool:
    values, counts = np.unique(data[data > 0], return_counts=True)
    return bool(values.size) and int(counts.max()) <= POINT_MAX_VOXELS


def slice_levels(levels: Image, rule: str = "mode") -> np.ndarray:
    """The level of every axial slice of ``levels``' RPI grid (index 0 = most inferior). A
    dense map gives a slice the most frequent level of its labelled voxels (``rule="mode"``,
    as ``sct_analyze_lesion``) or their mean value rounded half to even (``"mean"``, as
    ``sct_process_segmentation``); point labels follow the disc rule of the module docstring."""
    raw = to_rpi(levels).data
    data = np.rint(raw).astype(np.int64)
    data[data < 0] = 0
    n = data.shape[2]
    out = np.zeros(n, np.int64)
    if not data.any():
        raise MssegError("the level map is empty (no labelled voxel)")
    if is_point_map(data):
        discs = sorted((int(v), int(np.argwhere(data == v)[:, 2].mean()))
                       for v in np.unique(data[(data > 0) & (data < NOT_DISC)]))
        if not discs:
            raise MssegError("the level map holds no disc label (values 1–49)")
        top = min(v for v, _ in discs)      # the most superior disc has the lowest value
        for k in range(n):
            above = [v for v, z in discs if z > k]     # discs above slice k
            out[k] = max(above) if above else top - 1
        return out
    for k in range(n):
        values = data[:, :, k][data[:, :, k] > 0]
        if values.size and rule == "mean":
            plane = raw[:, :, k]
            out[k] = int(np.round(plane[(plane != 0) & np.isfinite(plane)].mean()))
        elif values.size:
            out[k] = int(np.bincount(values).argmax())
    return out


def check_same_grid(levels: Image, image: Image) -> None:
    """A one-line error unless the level map lies on ``image``'s voxel grid."""
    if not same_grid(levels, image):
        raise MssegError(f"the level map ({'×'.join(map(str, levels.shape[:3]))}) is not on "
                         f"the image's grid ({'×'.join(map(str, image.shape[:3]))}); bring "
                         "it to the image's space first (e.g. sct_register_multimodal)")


def lesion_levels(lesion: Image, levels: Image) -> pd.DataFrame:
    """The vertebral level of each lesion.

    Args:
        lesion: the lesion mask (lesions: 26-connected, the ids of
            :func:`msseg.lesion_table.lesion_table`).
        levels: a dense level map or disc labels on the mask's grid.

    Returns:
        One row per lesion: ``vert_level``, ``vert_level_name``, ``level_shares``.

    Raises:
        MssegError: the level map is on another grid, or empty.
    """
    check_same_grid(levels, lesion)
    per_slice = slice_levels(levels)
    labels = cc3d.connected_components(lesion.data > 0, connectivity=26)
    rpi = to_rpi(lesion.with_data(labels)).data
    dense = np.rint(to_rpi(levels).data).astype(np.int64)
    if is_point_map(dense):
        dense = np.zeros((1, 1, 1), np.int64)
    rows = []
    for i in range(1, int(labels.max()) + 1):
        where = np.nonzero(rpi == i)
        voxel = dense[where] if dense.shape == rpi.shape else np.zeros(0, np.int64)
        values = voxel[voxel > 0] if (voxel > 0).any() else per_slice[where[2]]
        counts = pd.Series(values).value_counts()
        shares = counts / counts.sum()
        # the level holding most; ties: the superior one (lower number)
        best = int(min(shares.index[shares == shares.max()]))
        rows.append({"lesion_id": i, "vert_level": best, "vert_level_name": level_name(best),
                     "level_shares": ";".join(f"{level_name(int(v))}:{s:.2f}" for v, s in
                                              sorted(shares.items()))})
    return pd.DataFrame(rows, columns=["lesion_id", *LEVEL_COLUMNS])


def distance_from_top(table: pd.DataFrame, image: Image) -> np.ndarray:
    """Per row of a lesion table (:func:`msseg.lesion_table.lesion_table`): the world centroid's
    distance (mm) below the most superior slice of ``image``'s grid, along its S–I voxel axis
    (no relabelling: the table's centroids)."""
    if not len(table):
        return np.zeros(0)
    k = si_axis(image)
    world = table[["centroid_x_mm", "centroid_y_mm", "centroid_z_mm"]].to_numpy(float)
    voxel = (np.linalg.inv(image.affine) @ np.column_stack([world, np.ones(len(world))]).T)[k]
    superior_last = image.affine[2, k] > 0       # the index grows towards S
    top = image.shape[k] - 1 if superior_last else 0
    return np.abs(top - voxel) * image.spacing[k]


def level_summary(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per scan and level: lesion count (by ``vert_level``) and lesion volume (each lesion's
    volume split by its level shares); then the cohort (``scan = all``)."""
    rows = []
    for scan, table in tables.items():
        for _, lesion in table.iterrows():
            for part in str(lesion["level_shares"]).split(";"):
                name, share = part.rsplit(":", 1)
                rows.append({"scan": scan, "level": name,
                             "n_lesions": int(name == lesion["vert_level_name"]),
                             "volume_mm3": float(share) * lesion["volume_mm3"]})
    if not rows:
        return pd.DataFrame(columns=["scan", "level", "n_lesions", "volume_mm3"])
    parts = pd.DataFrame(rows)
    per_scan = parts.groupby(["scan", "level"], sort=False, as_index=False).sum()
    cohort = parts.groupby("level", sort=False, as_index=False)[["n_lesions",
                                                                 "volume_mm3"]].sum()
    cohort.insert(0, "scan", "all")
    out = pd.concat([per_scan, cohort], ignore_index=True)
    return out.sort_values(["scan", "level"], key=_level_order, kind="stable",
                           ignore_index=True)


def _level_order(column: pd.Series) -> pd.Series:
    if column.name != "level":
        return column
    order = {level_name(i): i for i in range(1, 31)}
    return column.map(lambda name: order.get(name, 99))


# PAM50 (De Leener et al., NeuroImage 2018, doi:10.1016/j.neuroimage.2017.10.041), 0.5 mm axial
# slices counted from its most inferior one: the first and last slice of each vertebral level of
# PAM50_levels, and of each spinal level of PAM50_spinal_levels (spinal segments placed after
# Frostell et al., Front Neuroanat 2016, doi:10.3389/fnana.2016.00050). Read from the maps of
# spinalcordtoolbox/PAM50 @3144364; tests/integration/test_levels.py checks them against the maps.
PAM50_VERTEBRAL = {
    1: (939, 984), 2: (908, 938), 3: (871, 907), 4: (834, 870), 5: (801, 833), 6: (770, 800),
    7: (736, 769), 8: (693, 735), 9: (647, 692), 10: (601, 646), 11: (552, 600), 12: (501, 551),
    13: (450, 500), 14: (397, 449), 15: (343, 396), 16: (290, 342), 17: (232, 289),
    18: (169, 231), 19: (106, 168), 20: (40, 105)}
PAM50_SPINAL = {
    1: (970, 984), 2: (949, 969), 3: (916, 948), 4: (883, 915), 5: (850, 882), 6: (819, 849),
    7: (788, 818), 8: (756, 787), 9: (722, 755), 10: (685, 721), 11: (644, 684),
    12: (597, 643), 13: (548, 596), 14: (495, 547), 15: (443, 494), 16: (392, 442),
    17: (343, 391), 18: (299, 342), 19: (258, 298), 20: (221, 257), 21: (187, 220),
    22: (161, 186), 23: (138, 160), 24: (117, 137), 25: (101, 116), 26: (87, 100),
    27: (72, 86), 28: (59, 71), 29: (47, 58), 30: (40, 46)}


def spinal_level_name(level: int) -> str:
    """Spinal segments: 1 -> C1 … 8 -> C8, 9 -> T1 … 20 -> T12, 21 -> L1, 26 -> S1, 0 ->
    unknown."""
    for first, prefix, count in ((1, "C", 8), (9, "T", 12), (21, "L", 5), (26, "S", 5)):
        if first <= level < first + count:
            return f"{prefix}{level - first + 1}"
    return "unknown" if level == 0 else f"level {level}"


def spinal_levels(vertebral: np.ndarray) -> np.ndarray:
    """Per axial slice (RPI order), the spinal level from the vertebral one, through PAM50: a
    slice at fraction t of its vertebral level's slices (inferior 0, superior 1; slice centres)
    goes to the same fraction of that level in PAM50, and takes PAM50's spinal level there
    (0 where the vertebral level is unknown or outside PAM50, C1–L1)."""
    out = np.zeros(len(vertebral), np.int64)
    for level in np.unique(vertebral[vertebral > 0]):
        if int(level) not in PAM50_VERTEBRAL:
            continue
        slices = np.flatnonzero(vertebral == level)
        low, high = PAM50_VERTEBRAL[int(level)]
        t = (np.arange(len(slices)) + 0.5) / len(slices)
        pam50 = np.floor(low + t * (high - low + 1)).astype(int)
        for k, z in zip(slices, pam50, strict=True):
            inside = [s for s, (a, b) in PAM50_SPINAL.items() if a <= z <= b]
            out[k] = inside[0] if inside else 0
    return out
