"""Lesion synthesis into real images, the lesion prior, and PAM50 synthetic spines."""

from __future__ import annotations

from dataclasses import replace

import cc3d
import numpy as np
import pytest

from msseg import io
from msseg.data.lesion_synthesis import (
    LESION_APPEARANCE,
    CrossSections,
    LesionPrior,
    SynthesisResult,
    prior_for_contrast,
    synthesize_lesions,
    thick_slices,
)
from msseg.data.synthetic_spine import (
    CONTRAST_TISSUES,
    SpineConfig,
    _compose,
    _load_maps,
    contrast_config,
    synthetic_contrast_spine,
    synthetic_spine,
)
from msseg.image import Image
from msseg.phantom import make_phantom
from msseg.preprocess.orient import reorient


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


@pytest.mark.parametrize("contrast,order", [
    ("PSIR", ("PAM50_wm", "PAM50_gm", "PAM50_csf")),     # white matter bright, CSF darkest
    ("STIR", ("PAM50_csf", "PAM50_gm", "PAM50_wm")),     # CSF bright, cord grey
    ("UNIT1", ("PAM50_wm", "PAM50_gm", "PAM50_csf")),
])
def test_synthetic_contrasts_keep_their_tissue_ordering(shared_data, contrast, order):
    maps, _ = _load_maps(str(shared_data / "spine/PAM50"))
    box = (slice(40, 100), slice(40, 100), slice(400, 460))
    tissue = {k: v[box] for k, v in maps.items()}
    config = replace(contrast_config(contrast), noise=(0.0, 0.0), bias=0.0)
    for seed in range(5):   # every draw of the ±15% jitter keeps the order
        image = _compose(tissue, np.clip(tissue["PAM50_wm"] + tissue["PAM50_gm"], 0, 1),
                         np.random.default_rng(seed), config)
        means = [image[tissue[name] > 0.9].mean() for name in order]
        assert means[0] > means[1] > means[2], (contrast, means)


@pytest.mark.parametrize("contrast", sorted(CONTRAST_TISSUES))
def test_synthetic_contrast_spines_have_their_grid_and_lesion_sign(shared_data, contrast):
    image, cord, lesion = synthetic_contrast_spine(shared_data / "spine/PAM50", contrast, seed=2,
                                                   prior=LesionPrior(p_lesion_free=0.0))
    spacing = np.asarray(image.spacing)
    if contrast in ("PSIR", "STIR"):   # sagittal: thick along L-R
        assert 2.5 <= spacing[0] <= 3.5 and 0.6 <= spacing[1] <= 0.8
        assert spacing[1] == pytest.approx(spacing[2])
    else:
        assert np.all((spacing >= 0.9) & (spacing <= 1.1))
    assert image.orientation == "LAS" and cord.data.any()
    les = lesion.data > 0
    assert les.any() and not (les & ~(cord.data > 0)).any()
    healthy = np.median(image.data[(cord.data > 0) & ~les])
    hypo = contrast in ("PSIR", "UNIT1")
    assert (np.median(image.data[les]) < healthy) if hypo else (
        np.median(image.data[les]) > healthy)


def test_default_synthetic_spines_are_unchanged_by_the_contrast_options():
    assert SpineConfig().tissues is None and SpineConfig().thick_axis == 2
    with pytest.raises(ValueError, match="PSIR"):
        contrast_config("T2w")


# ------------------------------------------------------------- calibrated placement and profile

def _disc_cord(shape=(41, 41, 12), radius=12.0):
    """A round cord (RPI grid, 1 mm voxels) whose outer part is 100 and inner part 150."""
    x, y = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    dist = np.hypot(x - shape[0] // 2, y - shape[1] // 2)
    cord = np.repeat((dist <= radius)[:, :, None], shape[2], axis=2)
    data = np.where(cord, np.where(dist[:, :, None] <= radius * 0.5, 150.0, 100.0), 20.0)
    return Image(data.astype(np.float32), np.eye(4)), Image(cord.astype(np.uint8), np.eye(4))


def test_cross_sections_depth_and_columns():
    _, cord = _disc_cord()
    sections = CrossSections(cord.data > 0, np.ones(3))
    c = 20
    assert sections.r[c, c, 5] == pytest.approx(0.0, abs=1e-6)         # deepest point
    assert sections.r[c + 12, c, 5] == pytest.approx(1 - 1 / 13, abs=0.01)   # next to the edge
    assert sections.column[c, c - 10, 5] == 0          # posterior (y decreasing): dorsal
    assert sections.column[c, c + 10, 5] == 2          # anterior: ventral
    assert sections.column[c - 10, c, 5] == sections.column[c + 10, c, 5] == 1   # lateral
    assert not sections.outer[c, c, 5] and sections.outer[c + 9, c, 5]


@pytest.mark.parametrize("column", [0, 1, 2])
def test_white_matter_placement_draws_in_the_chosen_column(column):
    _, cord = _disc_cord()
    sections = CrossSections(cord.data > 0, np.ones(3))
    weights = tuple(float(i == column) for i in range(3))
    prior = LesionPrior(placement="white-matter", white_matter_share=1.0,
                        column_weights=weights)
    rng = np.random.default_rng(0)
    centres = np.array([sections.draw_centre(rng, prior) for _ in range(200)])
    r = sections.r[tuple(centres.T)]
    assert (r >= 0.45).all() and (r <= 0.9).all()
    assert (sections.column[tuple(centres.T)] == column).all()
    uniform = replace(prior, white_matter_share=0.0)
    anywhere = np.array([sections.draw_centre(rng, uniform) for _ in range(400)])
    assert (sections.r[tuple(anywhere.T)] < 0.45).mean() > 0.1      # grey matter too


def test_white_matter_reference_and_peaked_profile():
    image, cord = _disc_cord(shape=(41, 41, 30))
    flat = LesionPrior(contrast_range=(1.5, 1.5), contrast_reference="white-matter")
    result = synthesize_lesions(image, cord, seed=1, prior=flat, n_lesions=1)
    full = result.fraction.data == 1
    increment = result.image.data - image.data
    assert full.any()
    np.testing.assert_allclose(increment[full], 0.5 * 100.0, rtol=1e-5)   # (c − 1) · WM
    peaked = replace(flat, profile_edge=0.6)
    result = synthesize_lesions(image, cord, seed=1, prior=peaked, n_lesions=1)
    increment = (result.image.data - image.data)[result.lesion.data > 0]
    assert increment.max() <= 50.0 + 1e-3 and increment.max() > 0.9 * 50.0   # the centre
    assert increment.min() < 0.75 * increment.max()                        # a fainter rim
    np.testing.assert_array_equal(result.lesion.data,
                                  synthesize_lesions(image, cord, seed=1, prior=flat,
                                                     n_lesions=1).lesion.data)


def test_unknown_placement_is_refused():
    image, cord = _disc_cord()
    with pytest.raises(ValueError, match="placement"):
        synthesize_lesions(image, cord, prior=LesionPrior(placement="grey"))


def test_thick_slices_average_groups_and_keep_world_positions():
    image, cord = _disc_cord(shape=(41, 41, 23))
    data = image.data.copy()
    data += np.arange(23, dtype=np.float32)[None, None, :]       # a ramp along S–I
    affine = np.diag([0.5, 0.5, 1.0, 1.0])
    affine[:3, 3] = [-10, -10, 3]
    image, cord = Image(data, affine), Image(cord.data, affine)
    fraction = np.zeros(data.shape, np.float32)
    fraction[18:22, 18:22, 5:8] = 1.0          # 3 of the 5 slices of group 1 -> 0.6
    fraction[18:22, 18:22, 10:12] = 1.0        # 2 of 5 in group 2 -> 0.4: not labelled
    result = SynthesisResult(image, Image((fraction >= 0.5).astype(np.uint8), affine),
                             Image(fraction, affine), [])
    thick, thick_cord, lesion = thick_slices(result, cord, 5.0)
    assert thick.shape == (41, 41, 4) and thick.spacing == pytest.approx((0.5, 0.5, 5.0))
    np.testing.assert_allclose(thick.data[0, 0], 20 + np.array([2, 7, 12, 17]))  # group means
    # slice g is centred on its group: world z of old slices 5g..5g+4 averaged
    centres = thick.world_coordinates(np.array([[0, 0, g] for g in range(4)]))[:, 2]
    np.testing.assert_allclose(centres, 3 + 5 * np.arange(4) + 2)
    assert lesion.data[:, :, 1].sum() == 16 and lesion.data[:, :, [0, 2, 3]].sum() == 0
    assert thick_cord.data[20, 20].all() and not thick_cord.data[0, 0].any()
    with pytest.raises(ValueError, match="at least 2"):
        thick_slices(result, cord, 15.0)
