"""Lesion synthesis into real images, the lesion prior, and PAM50 synthetic spines."""

from __future__ import annotations

import cc3d
import numpy as np
import pytest

from msseg import io
from msseg.data.lesion_synthesis import (
    LESION_APPEARANCE,
    LesionPrior,
    prior_for_contrast,
    synthesize_lesions,
)
from msseg.data.synthetic_spine import synthetic_spine
from msseg.preprocess.orient import reorient
from msseg.synth import make_phantom


def test_prior_matches_published_statistics():
    prior, rng = LesionPrior(), np.random.default_rng(0)
    counts = np.array([prior.draw_count(rng) for _ in range(20000)])
    assert counts.max() <= 17
    assert (counts == 0).mean() == pytest.approx(0.18, abs=0.01)
    assert counts.mean() == pytest.approx(3.0, abs=0.1)
    volumes = np.array([prior.draw_volume(rng) for _ in range(20000)])
    assert volumes.min() >= 3 and volumes.max() <= 400
    assert 0.6 < ((volumes >= 10) & (volumes <= 100)).mean() < 0.9  # most 10-100 mm³


@pytest.fixture(scope="module")
def cord_scan():
    p = make_phantom(0, n_lesions=0)
    return p.image, p.cord


@pytest.mark.parametrize("seed", range(4))
def test_lesions_inside_cord_image_unchanged_outside(cord_scan, seed):
    image, cord = cord_scan
    result = synthesize_lesions(image, cord, seed=seed, n_lesions=4)
    lesion = result.lesion.data > 0
    fraction = result.fraction.data
    assert lesion.any()
    assert not (lesion & ~(cord.data > 0)).any()
    assert not ((fraction > 0) & ~(cord.data > 0)).any()
    np.testing.assert_array_equal(result.image.data[fraction == 0], image.data[fraction == 0])
    assert (result.image.data[lesion] > image.data[lesion]).all()   # hyperintense
    np.testing.assert_array_equal(lesion, fraction >= 0.5)
    # every painted lesion is visible in the mask; drawn volumes within the prior's range
    n = cc3d.connected_components(lesion, connectivity=26, return_N=True)[1]
    assert 1 <= n <= len(result.volumes_mm3) <= 4
    assert all(3 <= v <= 400 for v in result.volumes_mm3)
    # partial volume: voxels only partly inside a lesion carry a fraction in (0, 1)
    assert ((fraction > 0) & (fraction < 1)).any()


@pytest.mark.parametrize("contrast", sorted(LESION_APPEARANCE))
def test_contrast_sign_of_synthesised_lesions(cord_scan, contrast):
    """Hypointense on PSIR, UNIT1 and T1w, hyperintense on the others; the change is exactly
    f · (c − 1) · cord median with c in the contrast's range; every other voxel unchanged."""
    image, cord = cord_scan
    prior = prior_for_contrast(contrast)
    lo, hi = LESION_APPEARANCE[contrast]
    result = synthesize_lesions(image, cord, seed=5, prior=prior, n_lesions=3)
    fraction, lesion = result.fraction.data, result.lesion.data > 0
    assert lesion.any()
    before, after = image.data.astype(np.float32), result.image.data
    np.testing.assert_array_equal(after[fraction == 0], before[fraction == 0])
    change = after[lesion] - before[lesion]
    hypo = contrast in ("PSIR", "UNIT1", "T1w")
    assert (change < 0).all() if hypo else (change > 0).all()
    # per voxel: change / fraction = (c - 1) · I_cord with one c for the scan
    median = np.median(before[cord.data > 0])
    ratio = 1 + change / fraction[lesion] / median
    assert lo - 0.05 <= ratio.min() and ratio.max() <= hi + 0.05
    assert prior.contrast_range == (lo, hi) and prior.median_volume_mm3 == 35.0


def test_unknown_contrast_has_no_lesion_appearance():
    with pytest.raises(ValueError, match="FLAIR"):
        prior_for_contrast("FLAIR")


def test_lesion_volume_follows_drawn_volume_on_fine_grid():
    p = make_phantom(1, n_lesions=0, shape=(160, 160, 40), spacing=(0.25, 0.25, 1.0),
                     cord_diameters_mm=(24.0, 16.0))
    result = synthesize_lesions(p.image, p.cord, seed=3, n_lesions=1)
    measured = result.fraction.data.sum() * p.image.voxel_volume_mm3
    assert measured == pytest.approx(result.volumes_mm3[0], rel=0.2)  # clipped to the cord


def test_synthesis_works_in_any_orientation(cord_scan):
    image, cord = cord_scan
    flipped_image, flipped_cord = reorient(image, "PSR"), reorient(cord, "PSR")
    a = synthesize_lesions(image, cord, seed=5, n_lesions=3)
    b = synthesize_lesions(flipped_image, flipped_cord, seed=5, n_lesions=3)
    np.testing.assert_array_equal(reorient(b.lesion, "LAS").data, a.lesion.data)
    assert b.lesion.orientation == "PSR"


def test_synthesis_on_real_scan(shared_data):
    root = shared_data / "spine/sct_2014_testing/errsm_11/t2"
    image, cord = io.load(root / "t2.nii.gz"), io.load(root / "t2_manual_segmentation.nii.gz")
    cord = cord.with_data((cord.data > 0.5).astype(np.uint8))
    result = synthesize_lesions(image, cord, seed=2, n_lesions=3)
    lesion = result.lesion.data > 0
    assert lesion.any() and not (lesion & (cord.data == 0)).any()
    assert result.image.shape == image.shape and result.image.orientation == "PSR"
    unchanged = result.fraction.data == 0
    np.testing.assert_array_equal(result.image.data[unchanged], image.data[unchanged])


def test_synthetic_spine_from_pam50(shared_data):
    image, cord, lesion = synthetic_spine(shared_data / "spine/PAM50", seed=3)
    sx, sy, sz = image.spacing
    assert 0.3 <= sx <= 0.9 and sx == pytest.approx(sy) and 2.0 <= sz <= 7.0
    assert image.orientation == "LAS"
    assert cord.data.any() and not (lesion.data.astype(bool) & ~cord.data.astype(bool)).any()
    assert np.isfinite(image.data).all() and image.data.std() > 0
