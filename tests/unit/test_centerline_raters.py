"""Centerline error and localisation rate; majority vote, STAPLE and pairwise Dice."""

from __future__ import annotations

import numpy as np
import pytest

from msseg.evaluation.centerline import centerline_from_mask, centerline_mse_mm, localisation_rate
from msseg.evaluation.raters import majority_vote, pairwise_dice, staple, union


def test_centerline_from_mask_centre_of_mass_per_slice():
    mask = np.zeros((10, 10, 3), bool)
    mask[2:5, 4:7, 0] = True   # centre (3, 5)
    mask[6, 1, 2] = True
    points = centerline_from_mask(mask)
    np.testing.assert_allclose(points[0], [3, 5])
    assert np.isnan(points[1]).all()
    np.testing.assert_allclose(points[2], [6, 1])


def test_centerline_mse_hand_computed():
    ref = np.array([[0, 0], [0, 0], [0, 0], [np.nan, np.nan]], float)
    pred = np.array([[3, 0], [0, 2], [0, 0], [5, 5]], float)  # last slice has no reference
    # spacing 0.5 x 2: squared distances 2.25, 16, 0 -> sqrt(mean) = sqrt(18.25 / 3)
    assert centerline_mse_mm(pred, ref, (0.5, 2.0, 5.0)) == pytest.approx(np.sqrt(18.25 / 3))
    assert np.isnan(centerline_mse_mm(pred[3:], ref[3:], (1, 1, 1)))


def test_localisation_rate_hand_computed():
    ref = np.zeros((10, 10, 4), bool)
    ref[3:6, 3:6, :3] = True                     # cord on slices 0-2 only
    pred = np.array([[4, 4], [8, 8], [np.nan, np.nan], [4, 4]], float)
    # slice 0 inside, slice 1 outside, slice 2 no point, slice 3 has no reference cord
    assert localisation_rate(pred, ref) == pytest.approx(1 / 3)
    assert np.isnan(localisation_rate(pred, np.zeros_like(ref)))


def rater_masks():
    a = np.zeros((4, 4, 4), bool)
    b = np.zeros_like(a)
    c = np.zeros_like(a)
    a[0:2] = True        # 32 voxels
    b[1:3] = True        # overlaps a on slab 1
    c[1:2, :2] = True    # 8 voxels, inside a and b
    return a, b, c


def test_majority_vote_and_union():
    a, b, c = rater_masks()
    mv = majority_vote([a, b, c])
    expected = np.zeros_like(a)
    expected[1] = True  # slab 1 has at least 2 votes everywhere; slabs 0 and 2 one vote
    np.testing.assert_array_equal(mv, expected)
    np.testing.assert_array_equal(union([a, b, c]), a | b)
    # two raters: a tie is background
    np.testing.assert_array_equal(majority_vote([a, b]), a & b)


def test_staple_of_identical_raters_is_that_mask():
    a, _, _ = rater_masks()
    consensus, prob = staple([a, a, a])
    np.testing.assert_array_equal(consensus, a)
    assert prob.shape == a.shape and prob.max() <= 1.0


def test_staple_agrees_with_majority_when_raters_are_equally_good():
    a, b, c = rater_masks()
    consensus, _ = staple([a, b, a | b])
    np.testing.assert_array_equal(consensus, majority_vote([a, b, a | b]))


def test_pairwise_dice_values():
    a, b, c = rater_masks()
    table = pairwise_dice([a, b, c], ["r1", "r2", "r3"])
    assert list(zip(table.rater_a, table.rater_b, strict=True)) == [
        ("r1", "r2"), ("r1", "r3"), ("r2", "r3")]
    np.testing.assert_allclose(table.dice, [2 * 16 / 64, 2 * 8 / 40, 2 * 8 / 40])


def test_consensus_dispatch():
    from msseg.evaluation.raters import consensus

    masks = [np.array([1, 1, 0, 0], bool), np.array([1, 0, 1, 0], bool),
             np.array([1, 0, 0, 0], bool)]
    np.testing.assert_array_equal(consensus(masks, "union"), [1, 1, 1, 0])
    np.testing.assert_array_equal(consensus(masks, "majority"), [1, 0, 0, 0])
    with pytest.raises(ValueError):
        consensus(masks, "mean")
