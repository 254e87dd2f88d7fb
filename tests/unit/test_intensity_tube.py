"""Learnt intensity standardisation (Nyúl, quantile) and the centerline tube round trip."""

import numpy as np
import pytest

from msseg.preprocess import intensity
from msseg.preprocess.tube import Tube, centres_from_mask, centres_on_grid


def _brain(seed, scale=1.0, shift=0.0):
    rng = np.random.default_rng(seed)
    data = np.zeros((20, 20, 20), np.float32)
    data[3:17, 3:17, 3:17] = rng.gamma(3.0, 50.0, (14, 14, 14)) * scale + shift
    return data


def test_quantile_normalisation_is_exact_at_knots_monotone_and_keeps_zero():
    images = [_brain(0), _brain(1, 2.0, 100), _brain(2, 0.5)]
    template = intensity.learn_quantile_template(images)
    np.testing.assert_allclose(template, np.mean(
        [np.percentile(d[d != 0], range(101)) for d in images], axis=0))
    volume = _brain(3, 3.0, 20)
    out = intensity.apply_quantile(volume, template)
    inside = volume != 0
    q = np.percentile(volume[inside], range(101))
    # exact at the knots: voxels equal to a knot map onto the template value
    knots_out = intensity.piecewise_map(q, q, template, mask=np.ones(q.shape, bool))
    np.testing.assert_allclose(knots_out, template, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(np.percentile(out[inside], [0, 50, 100]),
                               [template[0], template[50], template[100]], rtol=1e-4)
    order = np.argsort(volume[inside])
    assert np.all(np.diff(out[inside][order]) >= -1e-4)   # monotone
    assert np.all(out[~inside] == 0)                      # background stays zero


def test_nyul_landmarks_and_linear_extension():
    images = [_brain(0), _brain(1, 2.0, 100)]
    landmarks = intensity.learn_nyul(images)
    assert landmarks[0] == pytest.approx(0.0) and landmarks[-1] == pytest.approx(100.0)
    assert np.all(np.diff(landmarks) > 0)
    # an affine change of the input does not change its standardised version
    a = intensity.apply_nyul(_brain(5), landmarks)
    b = intensity.apply_nyul(_brain(5, 4.0, 30.0), landmarks)
    np.testing.assert_allclose(a, b, atol=1e-3)
    # beyond the end knots the end segments extend linearly (no clipping)
    out = intensity.piecewise_map(np.array([-1.0, 0.5, 3.0]), [0, 1, 2], [0, 10, 30],
                                  mask=np.ones(3, bool))
    np.testing.assert_allclose(out, [-10, 5, 50])


def test_minmax_and_zscore_keep_background():
    data = _brain(0)
    mm = intensity.minmax(data)
    assert mm[data != 0].min() == 0 and mm[data != 0].max() == pytest.approx(1)
    z = intensity.zscore_masked(data)
    assert z[data != 0].mean() == pytest.approx(0, abs=1e-5)
    assert np.all(mm[data == 0] == 0) and np.all(z[data == 0] == 0)


def test_tube_paste_inverts_extract_inside_windows():
    rng = np.random.default_rng(0)
    volume = rng.normal(size=(30, 25, 12)).astype(np.float32)
    centres = np.column_stack([np.linspace(3, 27, 12), np.linspace(20, 5, 12)])
    tube = Tube.around(centres, (8, 6))
    cut = tube.extract(volume, fill=-99)
    assert cut.shape == (8, 6, 12)
    back = tube.paste(cut, volume.shape, fill=np.nan)
    covered = ~np.isnan(back)
    np.testing.assert_array_equal(back[covered], volume[covered])
    assert covered.sum() == (cut != -99).sum()
    two = tube.extract(np.stack([volume, -volume]))   # channel-first arrays too
    np.testing.assert_array_equal(two[1], -tube.extract(volume))


def test_centres_from_mask_and_on_other_grid():
    mask = np.zeros((20, 20, 6), bool)
    mask[4:7, 10:13, 1] = True
    mask[8:11, 10:13, 4] = True
    centres = centres_from_mask(mask)
    np.testing.assert_allclose(centres[:, 0], [5, 5, 6 + 1 / 3, 7 + 2 / 3, 9, 9])
    affine = np.diag([0.5, 0.5, 2.0, 1.0])
    world = np.column_stack([centres * 0.5, np.arange(6) * 2.0])
    fine = np.diag([0.5, 0.5, 1.0, 1.0])
    on_fine = centres_on_grid(world, fine, 11)
    np.testing.assert_allclose(on_fine[::2], centres)
    np.testing.assert_allclose(centres_on_grid(world, affine, 6), centres)
