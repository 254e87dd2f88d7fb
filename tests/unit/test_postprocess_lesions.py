"""Post-processing and the per-lesion table on hand-built masks."""

from __future__ import annotations

import numpy as np
import pytest

from msseg.image import Image
from msseg.lesion_measures import COLUMNS as CORD_COLUMNS
from msseg.lesion_table import COLUMNS, lesion_table, si_axis
from msseg.postprocess import PostprocessConfig, dilate_mm, postprocess
from msseg.preprocess.orient import reorient


def test_lesions_restricted_to_dilated_cord_and_small_ones_removed():
    cord = np.zeros((40, 40, 10), bool)
    cord[15:25, 15:25, :] = True
    cord[2:4, 2:4, 2] = True                        # spurious island: not the largest component
    lesion = np.zeros_like(cord)
    lesion[18:22, 18:22, 3:5] = True                # inside: 32 voxels = 32 mm³ at 1 mm
    lesion[25:27, 18:20, 6] = True                  # just outside, within 2 mm: kept
    lesion[35:38, 35:38, 6:8] = True                # far outside: removed
    lesion[16, 16, 8] = True                        # 1 mm³ < 3 mm³: removed
    c, le = postprocess(cord, lesion, (1, 1, 1), PostprocessConfig(2.0, 3.0, True))
    assert not c[2:4, 2:4, 2].any() and c[15:25, 15:25].all()
    assert le[18:22, 18:22, 3:5].all() and le[25:27, 18:20, 6].all()
    assert not le[35:38, 35:38].any() and not le[16, 16, 8]
    assert not (le & ~dilate_mm(c, (1, 1, 1), 2.0)).any()


def test_dilate_mm_is_physical():
    mask = np.zeros((21, 21, 5), bool)
    mask[10, 10, 2] = True
    grown = dilate_mm(mask, (0.5, 0.5, 3.0), 1.0)
    assert grown[8:13, 10, 2].all() and not grown[7, 10, 2]   # 2 voxels of 0.5 mm in-plane
    assert not grown[10, 10, 1]                               # slices 3 mm apart: not reached


def test_lesion_table_hand_computed():
    affine = np.diag([-0.5, 0.5, 3.0, 1.0])                   # LAS
    lesion = np.zeros((20, 20, 6), np.uint8)
    lesion[4:8, 4:6, 1:4] = 1                                 # 4 x 2 x 3 voxels
    lesion[15, 15, 5] = 1                                     # a single voxel
    prob = np.where(lesion > 0, 0.8, 0.1).astype(np.float32)
    cord = np.zeros_like(lesion)
    cord[:10, :12] = 1                                        # a straight cord, AP 0..11
    image = Image(lesion, affine)
    table = lesion_table(image, image.with_data(prob), image.with_data(cord))
    assert list(table.columns) == [*COLUMNS, *CORD_COLUMNS] and len(table) == 2
    big = table.iloc[0]
    assert big.volume_mm3 == pytest.approx(24 * 0.75)
    assert big.length_si_mm == pytest.approx(9.0)
    assert big.max_axial_area_mm2 == pytest.approx(8 * 0.25)
    assert big.equivalent_diameter_mm == pytest.approx((6 * 18 / np.pi) ** (1 / 3))
    assert (big.slice_min, big.slice_max) == (1, 3)
    assert big.centroid_x_mm == pytest.approx(-0.5 * 5.5)
    assert big.centroid_z_mm == pytest.approx(6.0)
    assert big.mean_probability == pytest.approx(0.8)
    assert big.region == "cord" and table.iloc[1].region == "peri-cord"
    # SCT's measures against the straight cord (cos = 1; LAS is SCT's RPI)
    assert big.volume_in_cord_mm3 == pytest.approx(18.0)
    assert big.length_mm == pytest.approx(9.0)                # 3 slices of 3 mm
    assert big.width_mm == pytest.approx(1.0)                 # AP 2 voxels of 0.5 mm
    assert big.max_equivalent_diameter_mm == pytest.approx(2 * np.sqrt(2.0 / np.pi))
    assert big.max_axial_damage_ratio == pytest.approx(8 / 120)
    assert big.midsagittal_slice == pytest.approx(4.5)       # the cord's R-L centre
    assert big.midsagittal_length_mm == pytest.approx(9.0)
    assert big.midsagittal_width_mm == pytest.approx(1.0)
    assert big.dorsal_bridge_mm == pytest.approx(4 * 0.5)    # AP 0..3 behind the lesion
    assert big.ventral_bridge_mm == pytest.approx(6 * 0.5)   # AP 6..11 in front
    assert big.total_bridge_mm == pytest.approx(5.0)
    assert big.dorsal_bridge_ratio_pct == pytest.approx(40.0)
    outside = table.iloc[1]
    assert outside.volume_in_cord_mm3 == 0 and np.isnan(outside.length_mm)
    assert np.isnan(outside.total_bridge_mm)
    # the same lesions in sagittal storage: same physical measures, slices on the S-I axis
    psr = reorient(image, "PSR")
    other = lesion_table(psr)
    assert si_axis(psr) == 1
    assert sorted(other.volume_mm3) == pytest.approx(sorted(table.volume_mm3))
    assert sorted(other.length_si_mm) == pytest.approx(sorted(table.length_si_mm))
    assert other.region.tolist() == ["unknown", "unknown"]
