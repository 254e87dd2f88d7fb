"""Phantoms: determinism, geometry, lesion placement and contrast."""

from __future__ import annotations

import cc3d
import numpy as np
import pytest

from msseg.phantom import make_phantom, perturb_mask


def test_phantom_is_seeded():
    a, b, c = make_phantom(4), make_phantom(4), make_phantom(5)
    np.testing.assert_array_equal(a.image.data, b.image.data)
    np.testing.assert_array_equal(a.lesion.data, b.lesion.data)
    assert not np.array_equal(a.image.data, c.image.data)


def test_phantom_geometry():
    p = make_phantom(0)
    assert p.image.shape == (192, 192, 15)
    assert p.image.spacing == pytest.approx((0.35, 0.35, 5.0))
    assert p.image.orientation == "LAS"   # SCT's RPI
    area = p.cord.data[:, :, 1:-1].sum(axis=(0, 1)) * 0.35 * 0.35
    # ellipse 12 x 8 mm: pi * 6 * 4 = 75.4 mm^2 per slice
    np.testing.assert_allclose(area, np.pi * 6 * 4, rtol=0.08)
    # the centerline is curved: its in-plane position varies along the cord
    assert np.ptp(p.centerline_mm[:, 0]) > 1.0
    # centerline points lie inside the cord mask
    ijk = np.linalg.solve(p.image.affine, np.c_[p.centerline_mm, np.ones(15)].T)[:3].T
    ijk = np.round(ijk).astype(int)
    assert p.cord.data[ijk[:, 0], ijk[:, 1], ijk[:, 2]].all()


@pytest.mark.parametrize("seed", range(6))
def test_lesions_inside_cord_hyperintense_and_in_range(seed):
    p = make_phantom(seed)
    lesion, cord = p.lesion.data.astype(bool), p.cord.data.astype(bool)
    assert not (lesion & ~cord).any()
    assert 0 <= len(p.lesions) <= 17
    n = cc3d.connected_components(lesion, connectivity=26, return_N=True)[1]
    assert n <= len(p.lesions)
    if lesion.any():
        cord_only = cord & ~lesion
        assert p.image.data[lesion].mean() > 1.3 * p.image.data[cord_only].mean()
    for les in p.lesions:
        volume = 4 / 3 * np.pi * les.radius_mm**2 * les.half_length_mm
        assert 3 - 1e-6 <= volume <= 500 + 1e-6
        assert 1.5 <= les.half_length_mm / les.radius_mm <= 3.0


def test_lesion_count_request_and_lesion_free():
    assert not make_phantom(1, n_lesions=0).lesion.data.any()
    assert len(make_phantom(1, n_lesions=5).lesions) == 5


def test_perturb_mask_drops_and_adds():
    p = make_phantom(2, n_lesions=6)
    ref = p.lesion.data.astype(bool)
    n_ref = cc3d.connected_components(ref, connectivity=26, return_N=True)[1]
    pred = perturb_mask(ref, seed=0, drop=1, add=1, allowed=p.cord.data > 0)
    n_pred = cc3d.connected_components(pred, connectivity=26, return_N=True)[1]
    assert n_pred == n_ref  # one lesion dropped, one false positive added
    assert not (pred & ~(p.cord.data > 0)).any()
    assert not np.array_equal(pred, ref)
