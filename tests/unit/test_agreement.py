"""Lesion-wise agreement of two masks, computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from msseg.evaluation.agreement import lesion_agreement, pool


def _masks():
    a = np.zeros((10, 10, 10), bool)
    b = np.zeros_like(a)
    a[1:3, 1:3, 1:3] = True          # A1: 8 voxels
    a[8, 8, 8] = True                # A2: 1 voxel, nobody else's
    b[2:4, 2:3, 2:3] = True          # B1: 2 voxels; 1 of them in A1
    b[5, 5, 5:9] = True              # B2: 4 voxels, nobody else's
    cord = np.zeros_like(a)
    cord[0:4, 0:4, 0:4] = True       # holds A1 and B1 whole; A2 and B2 lie outside
    return a, b, cord


def test_counts_found_volumes_dice_and_outside_by_hand():
    a, b, cord = _masks()
    row, lesions = lesion_agreement(a, b, voxel_mm3=0.5, cord=cord)
    assert row == {"n_a": 2, "n_b": 2, "found_a": 1, "found_b": 1,
                   "volume_a_mm3": 4.5, "volume_b_mm3": 3.0, "intersection_mm3": 0.5,
                   "dice": 2 * 1 / (9 + 6), "outside_cord_a": 1, "outside_cord_b": 1}
    a_rows = lesions[lesions.model == "a"].set_index("lesion_id")
    assert a_rows.volume_mm3.tolist() == [4.0, 0.5]
    assert a_rows.overlap_fraction.tolist() == [1 / 8, 0.0]
    b_rows = lesions[lesions.model == "b"].set_index("lesion_id")
    assert b_rows.overlap_fraction.tolist() == [0.5, 0.0]
    assert b_rows.outside_cord.tolist() == [False, True]


def test_overlap_threshold_decides_found():
    a, b, _ = _masks()
    row, _ = lesion_agreement(a, b, 1.0, overlap=0.125)     # A1: 1/8 covered -> found
    assert (row["found_a"], row["found_b"]) == (1, 1)
    row, _ = lesion_agreement(a, b, 1.0, overlap=0.2)       # A1 no longer, B1 (1/2) still
    assert (row["found_a"], row["found_b"]) == (0, 1)
    row, _ = lesion_agreement(a, b, 1.0, overlap=0.6)
    assert (row["found_a"], row["found_b"]) == (0, 0)
    with pytest.raises(ValueError, match="overlap"):
        lesion_agreement(a, b, 1.0, overlap=1.5)


def test_empty_masks_and_no_cord():
    empty = np.zeros((4, 4, 4), bool)
    row, lesions = lesion_agreement(empty, empty, 1.0)
    assert row["dice"] == 1.0 and row["n_a"] == row["n_b"] == 0 and lesions.empty
    assert math.isnan(row["outside_cord_a"]) and math.isnan(row["outside_cord_b"])
    one = empty.copy()
    one[1, 1, 1] = True
    row, _ = lesion_agreement(one, empty, 1.0)
    assert row["dice"] == 0.0 and (row["n_a"], row["found_a"]) == (1, 0)
    with pytest.raises(ValueError, match="shape"):
        lesion_agreement(one, np.zeros((4, 4, 5), bool), 1.0)


def test_pool_over_scans():
    a, b, cord = _masks()
    first, _ = lesion_agreement(a, b, 1.0, cord=cord)
    empty = np.zeros_like(a)
    second, _ = lesion_agreement(a, empty, 1.0)        # no cord: outside counts NaN here
    total = pool([first, second])
    assert total["scans"] == 2 and (total["n_a"], total["n_b"]) == (4, 2)
    assert total["share_a_found"] == 1 / 4 and total["share_b_found"] == 1 / 2
    assert total["dice"] == 2 * 1 / (9 + 6 + 9)
    assert total["outside_cord_a"] == 1 and total["outside_cord_b"] == 1
    nobody = pool([lesion_agreement(empty, empty, 1.0)[0]])
    assert math.isnan(nobody["share_a_found"]) and nobody["dice"] == 1.0
    assert pool([])["scans"] == 0
