"""Lesions per vertebral level, from a level map in the image's space.

A level map is either

* **dense** (SCT's ``sct_label_vertebrae`` ``*_seg_labeled``, the PAM50 ``PAM50_levels`` map):
  voxels labelled with their vertebral (or spinal) level, 1 = C1 … 7 = C7, 8 = T1 … 19 = T12,
  20 = L1 … 24 = L5, 25 = S1 …; each axial slice takes the most frequent level of its labelled
  voxels (slices without one: level 0, unknown);
* **point labels** (disc labels, ``PAM50_label_disc``, SCT's ``labels-disc``): one voxel per
  intervertebral disc, value n at the top of vertebra n (disc 3 = C2/C3, above C3; recognised
  by every value having at most 27 voxels). A slice below disc n, down to disc n + 1's own
  slice, is level n (a disc's slice belongs to the vertebra above it, as in PAM50_levels);
  above the highest disc t, level t − 1; below the lowest, that disc's level. A missing disc
  merges its two levels into the upper one.
  Values ≥ 50 (SCT's pontomedullary junction, conus) are not discs and are ignored.

A lesion (26-connected component) gets the share of its voxels on each level's slices,
``vert_level`` = the level holding most of it (ties: the superior one), ``vert_level_name``
(C3, T5, …) and ``level_shares`` (``C3:0.70;C4:0.30``). With or without a level map the table has
``distance_from_top_mm``: the lesion centroid's distance below the most superior slice of the
field of view, along the S–I voxel axis.
"""

from __future__ import annotations

import cc3d
import numpy as np
import pandas as pd

from msseg.errors import MssegError
from msseg.image import Image, si_axis
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


def slice_levels(levels: Image) -> np.ndarray:
    """The level of every axial slice of ``levels``' RPI grid (index 0 = most inferior)."""
    data = np.rint(to_rpi(levels).data).astype(np.int64)
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
        if values.size:
            out[k] = int(np.bincount(values).argmax())
    return out


def lesion_levels(lesion: Image, levels: Image) -> pd.DataFrame:
    """One row per lesion (the ids of :func:`msseg.lesion_table.lesion_table`): ``vert_level``,
    ``vert_level_name``, ``level_shares``. ``levels`` must be on the lesion mask's grid."""
    if levels.shape[:3] != lesion.shape[:3] or not np.allclose(levels.affine, lesion.affine,
                                                                atol=1e-3):
        raise MssegError(f"the level map ({'×'.join(map(str, levels.shape[:3]))}) is not on "
                         f"the image's grid ({'×'.join(map(str, lesion.shape[:3]))}); bring "
                         "it to the image's space first (e.g. sct_register_multimodal)")
    per_slice = slice_levels(levels)
    labels = cc3d.connected_components(lesion.data > 0, connectivity=26)
    rpi = to_rpi(lesion.with_data(labels)).data
    rows = []
    for i in range(1, int(labels.max()) + 1):
        slices = np.argwhere(rpi == i)[:, 2]
        counts = pd.Series(per_slice[slices]).value_counts()
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
