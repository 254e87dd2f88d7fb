"""Per-lesion table, one row per lesion, tidy (like scikit-image's ``regionprops_table``).

Design notes: docs/explanation/design-notes.md#msseglesion_table.
"""

from __future__ import annotations

import cc3d
import numpy as np
import pandas as pd

from msseg.image import Image, closest_axis, si_axis
from msseg.lesion_measures import COLUMNS as CORD_COLUMNS
from msseg.lesion_measures import lesion_measures
from msseg.preprocess.orient import to_rpi

COLUMNS = ("lesion_id", "volume_mm3", "length_si_mm", "max_axial_area_mm2",
           "equivalent_diameter_mm", "centroid_x_mm", "centroid_y_mm", "centroid_z_mm",
           "slice_min", "slice_max", "mean_probability", "region")


def lesion_table(lesion: Image, probability: Image | None = None,
                 cord: Image | None = None, si_slices: int | None = None,
                 si_offset: int = 0) -> pd.DataFrame:
    """One row per lesion (26-connected component), measured in the image's physical space.

    Args:
        lesion: the lesion mask (voxels > 0 are lesion).
        probability: the lesion probability map (``mean_probability``; NaN without it).
        cord: the cord mask: ``region`` and SCT's lesion measures (:mod:`msseg.lesion_measures`).
        si_slices: when the masks are a crop, the whole image's number of axial slices (SCT
            smooths the centerline by the share of them that hold cord).
        si_offset: the crop's first axial slice counted from the image's most inferior one.

    Returns:
        The table; its columns are described in docs/reference/outputs.md.
    """
    mask = lesion.data > 0
    labels, n = cc3d.connected_components(mask, connectivity=26, return_N=True)
    columns = [*COLUMNS, *(CORD_COLUMNS if cord is not None else ())]
    if n == 0:
        return pd.DataFrame(columns=columns)
    stats = cc3d.statistics(labels)
    voxel_mm3 = lesion.voxel_volume_mm3
    rpi = to_rpi(lesion.with_data(labels))
    rpi_boxes = cc3d.statistics(rpi.data)["bounding_boxes"]
    axial_area = float(np.prod(rpi.spacing[:2]))
    k = si_axis(lesion)
    rows = []
    for i in range(1, n + 1):
        box = stats["bounding_boxes"][i]
        inside = labels[box] == i
        count = int(stats["voxel_counts"][i])
        rpi_slices = (rpi.data[rpi_boxes[i]] == i).sum(axis=(0, 1))
        spanned = np.flatnonzero(rpi_slices)
        centroid = lesion.world_coordinates(stats["centroids"][i][None])[0]
        rows.append({
            "lesion_id": i,
            "volume_mm3": count * voxel_mm3,
            "length_si_mm": (spanned[-1] - spanned[0] + 1) * rpi.spacing[2],
            "max_axial_area_mm2": float(rpi_slices.max()) * axial_area,
            "equivalent_diameter_mm": (6 * count * voxel_mm3 / np.pi) ** (1 / 3),
            "centroid_x_mm": centroid[0], "centroid_y_mm": centroid[1],
            "centroid_z_mm": centroid[2],
            "slice_min": int(box[k].start), "slice_max": int(box[k].stop - 1),
            "mean_probability": (float(probability.data[box][inside].mean())
                                 if probability is not None else float("nan")),
            "region": _region(cord, box, inside),
        })
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    if cord is None:
        return table
    measures = lesion_measures(rpi.data, to_rpi(cord).data, tuple(rpi.spacing), si_slices,
                               si_offset)
    measures["midsagittal_slice"] = _native_rl_index(lesion, rpi,
                                                     measures["midsagittal_slice"].to_numpy())
    return table.merge(measures, on="lesion_id")[columns]


def _native_rl_index(native: Image, rpi: Image, x: np.ndarray) -> np.ndarray:
    """RPI R–L positions (voxels) as indices of ``native``'s own axis closest to R–L."""
    axis = closest_axis(native, 0)
    points = np.column_stack([x, np.zeros((len(x), 2)), np.ones(len(x))])
    world = points @ rpi.affine.T
    return (world @ np.linalg.inv(native.affine).T)[:, axis]


def _region(cord: Image | None, box, inside: np.ndarray) -> str:
    if cord is None:
        return "unknown"
    return "cord" if (cord.data[box][inside] > 0).mean() >= 0.5 else "peri-cord"
