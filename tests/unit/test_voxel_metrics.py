"""Voxel metrics on hand-built arrays with hand-computed values, and every empty rule."""

from __future__ import annotations

import numpy as np
import pytest

from msseg.evaluation.voxel import (
    SurfaceDistances,
    average_symmetric_surface_distance,
    dice,
    hausdorff95,
    normalised_surface_distance,
    relative_volume_error,
    surface,
)
from msseg.image import bounding_box


def cubes():
    """3x3x3 reference cube and the same cube shifted by one voxel along x."""
    ref = np.zeros((7, 7, 7), bool)
    ref[1:4, 1:4, 1:4] = True
    pred = np.zeros_like(ref)
    pred[2:5, 1:4, 1:4] = True
    return pred, ref


def test_dice_hand_computed():
    pred, ref = cubes()
    # |P ∩ R| = 2 * 3 * 3 = 18, |P| = |R| = 27
    assert dice(pred, ref) == pytest.approx(2 * 18 / 54)
    p = np.zeros((1, 1, 10), bool)
    r = np.zeros_like(p)
    p[..., :4] = True
    r[..., 1:7] = True
    assert dice(p, r) == pytest.approx(0.6)  # 2*3/(4+6)


def test_surface_is_mask_minus_six_connected_erosion():
    _, ref = cubes()
    border = surface(ref)
    assert border.sum() == 26
    assert not border[2, 2, 2]
    edge = np.ones((5, 5, 5), bool)  # voxels on the image edge are surface
    assert surface(edge).sum() == 5**3 - 3**3


def test_surface_equals_scipy_erosion_definition():
    from scipy import ndimage

    rng = np.random.default_rng(0)
    for shape in [(9, 7, 5), (1, 6, 6), (12, 12, 1)]:
        mask = rng.random(shape) > 0.4
        np.testing.assert_array_equal(surface(mask), mask & ~ndimage.binary_erosion(mask))


def test_distances_hand_computed_isotropic():
    pred, ref = cubes()
    d = SurfaceDistances.compute(pred, ref, (1, 1, 1))
    # each direction: 16 surface voxels shared (distance 0), 10 at one voxel
    assert sorted(d.pred_to_ref.tolist()) == [0.0] * 16 + [1.0] * 10
    assert sorted(d.ref_to_pred.tolist()) == [0.0] * 16 + [1.0] * 10
    assert normalised_surface_distance(pred, ref, (1, 1, 1), 0.5) == pytest.approx(32 / 52)
    assert normalised_surface_distance(pred, ref, (1, 1, 1), 1.0) == 1.0
    assert hausdorff95(pred, ref, (1, 1, 1)) == 1.0
    assert average_symmetric_surface_distance(pred, ref, (1, 1, 1)) == pytest.approx(20 / 52)


def test_distances_hand_computed_anisotropic():
    pred, ref = cubes()
    spacing = (2.0, 1.0, 1.0)
    # the 9 voxels of the outer x faces are now 2 mm away; the former interior voxel of the
    # other cube is 1 mm from a neighbour along y
    d = SurfaceDistances.compute(pred, ref, spacing)
    assert sorted(d.pred_to_ref.tolist()) == [0.0] * 16 + [1.0] + [2.0] * 9
    assert normalised_surface_distance(pred, ref, spacing, 1.0) == pytest.approx(34 / 52)
    assert hausdorff95(pred, ref, spacing) == 2.0
    assert average_symmetric_surface_distance(pred, ref, spacing) == pytest.approx(38 / 52)


def test_hd95_uses_linear_percentile_per_direction_and_max():
    ref = np.zeros((1, 1, 40), bool)
    ref[0, 0, 0:2] = True
    pred = np.zeros_like(ref)
    pred[0, 0, 0:2] = True
    pred[0, 0, 30] = True  # one far-away voxel, 29 voxels from ref's surface
    d = SurfaceDistances.compute(pred, ref, (1, 1, 1))
    expected = max(np.percentile(d.pred_to_ref, 95), np.percentile(d.ref_to_pred, 95))
    assert hausdorff95(pred, ref, (1, 1, 1)) == pytest.approx(expected)
    assert sorted(d.pred_to_ref.tolist()) == [0.0, 0.0, 29.0]
    assert expected == pytest.approx(0.0 + 0.9 * 29 + 0.0)  # P95 of [0,0,29]: 0.9 of the way


@pytest.mark.parametrize("pred_empty,ref_empty", [(True, True), (True, False), (False, True)])
def test_empty_rules(pred_empty, ref_empty):
    full = np.zeros((5, 5, 5), bool)
    full[1:3, 1:3, 1:3] = True
    empty = np.zeros_like(full)
    pred = empty if pred_empty else full
    ref = empty if ref_empty else full
    both = pred_empty and ref_empty
    assert dice(pred, ref) == (1.0 if both else 0.0)
    assert normalised_surface_distance(pred, ref, (1, 1, 1)) == (1.0 if both else 0.0)
    assert np.isnan(hausdorff95(pred, ref, (1, 1, 1)))
    assert np.isnan(average_symmetric_surface_distance(pred, ref, (1, 1, 1)))
    rve = relative_volume_error(pred, ref)
    if both:
        assert rve == 0.0
    elif ref_empty:
        assert np.isnan(rve)
    else:
        assert rve == -1.0


def test_relative_volume_error_hand_computed():
    ref = np.zeros((4, 4, 4), bool)
    ref[:3] = True  # 48 voxels
    pred = np.zeros_like(ref)
    pred[:2] = True  # 32
    assert relative_volume_error(pred, ref) == pytest.approx(-16 / 48)


def test_bounding_box_crop_changes_no_distance():
    rng = np.random.default_rng(3)
    pred = np.zeros((30, 30, 12), bool)
    ref = np.zeros_like(pred)
    pred[5:15, 6:18, 2:7] = rng.random((10, 12, 5)) > 0.3
    ref[7:16, 5:17, 3:9] = rng.random((9, 12, 6)) > 0.3
    cropped = SurfaceDistances.compute(pred, ref, (0.5, 0.5, 3.0))
    # reference computation on the full grid, no crop
    from scipy import ndimage

    sp, sr = surface(pred), surface(ref)
    full = ndimage.distance_transform_edt(~sr, sampling=(0.5, 0.5, 3.0))[sp]
    np.testing.assert_allclose(np.sort(cropped.pred_to_ref), np.sort(full))
    assert bounding_box(np.zeros((3, 3, 3), bool)) is None
