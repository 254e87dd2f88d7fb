"""Stitching on hand-built chunks: grid, exact reassembly, the ramp (hand-computed), label
majority, dropped chunks, gaps, far-apart chunks, mixed resolutions and rotations."""

from __future__ import annotations

import numpy as np
import pytest

from msseg.errors import MssegError
from msseg.image import Image
from msseg.preprocess.stitch import contains, corners, output_grid, stitch

SPACING = (0.8, 0.8, 2.0)


def volume(shape=(20, 18, 50), seed=0) -> Image:
    rng = np.random.default_rng(seed)
    data = rng.normal(100, 20, size=shape).astype(np.float32)
    affine = np.diag([-SPACING[0], SPACING[1], SPACING[2], 1.0])
    affine[:3, 3] = (30.0, -40.0, -100.0)
    return Image(data, affine)


def chunk(image: Image, k0: int, k1: int) -> Image:
    return image.crop((slice(None), slice(None), slice(k0, k1)))


def test_corners_are_voxel_edges():
    image = volume((2, 3, 4))
    pts = corners(image)
    assert pts.shape == (8, 3)
    np.testing.assert_allclose(pts.min(0), [30 - 0.8 * 1.5, -40 - 0.4, -101])
    np.testing.assert_allclose(pts.max(0), [30 + 0.4, -40 + 0.8 * 2.5, -100 + 2 * 3.5])


def test_chunks_of_one_volume_stitch_back_exactly():
    image = volume()
    parts = [chunk(image, 0, 20), chunk(image, 15, 36), chunk(image, 30, 50)]
    grid, _ = output_grid(parts)
    assert grid.shape == image.shape
    np.testing.assert_allclose(grid.affine, image.affine, atol=1e-9)
    for order in (1, 3):
        stitched, _, report = stitch(parts, order=order)
        np.testing.assert_allclose(stitched.data, image.data, rtol=1e-5, atol=1e-3)
        assert report.dropped == [] and report.gaps_mm == []


def test_ramp_is_linear_across_the_overlap():
    image = volume()
    low = chunk(image, 0, 30).with_data(np.full((20, 18, 30), 10.0, np.float32))
    high = chunk(image, 20, 50).with_data(np.full((20, 18, 30), 20.0, np.float32))
    low, high = Image(low.data, low.affine), Image(high.data, high.affine)
    stitched, _, _ = stitch([low, high], order=1)
    # overlap = slices 20..29; weights: depth behind the other chunk's face, in mm:
    # d_low = (29.5 - z)·2, d_high = (z - 19.5)·2 -> value = 10 + (z - 19.5)
    profile = stitched.data[10, 9]
    np.testing.assert_allclose(profile[:20], 10, rtol=1e-6)
    np.testing.assert_allclose(profile[20:30], 10 + (np.arange(20, 30) - 19.5), rtol=1e-5)
    np.testing.assert_allclose(profile[30:], 20, rtol=1e-6)


def test_labels_blend_by_majority_and_a_crossing_lesion_stays_one():
    import cc3d

    image = volume()
    lesion = np.zeros(image.shape, np.uint8)
    lesion[8:12, 7:11, 17:33] = 1       # crosses the overlap 20..29
    parts = [chunk(image, 0, 30), chunk(image, 20, 50)]
    maps = [Image(lesion[:, :, 0:30], parts[0].affine), Image(lesion[:, :, 20:50],
                                                              parts[1].affine)]
    _, labels, _ = stitch(parts, labels={"lesion": maps}, order=1)
    np.testing.assert_array_equal(labels["lesion"].data, lesion)
    assert cc3d.connected_components(labels["lesion"].data, return_N=True)[1] == 1
    # the chunks disagree inside the overlap: the deeper chunk wins (z < 24.5: the low one)
    only_low = np.zeros(image.shape, np.uint8)
    only_low[8:12, 7:11, 20:30] = 1
    maps = [Image(only_low[:, :, 0:30], parts[0].affine),
            Image(np.zeros((20, 18, 30), np.uint8), parts[1].affine)]
    _, labels, _ = stitch(parts, labels={"lesion": maps}, order=1)
    kept = np.flatnonzero(labels["lesion"].data.any(axis=(0, 1)))
    assert kept.tolist() == [20, 21, 22, 23, 24]


def test_chunk_inside_another_is_dropped_and_gaps_are_reported():
    image = volume()
    stitched, _, report = stitch([chunk(image, 0, 30), chunk(image, 5, 15),
                                  chunk(image, 20, 50)], order=1)
    assert report.dropped == [1] and report.kept == [0, 2]
    _, _, report = stitch([chunk(image, 0, 20), chunk(image, 25, 50)], order=1)
    assert report.gaps_mm == [pytest.approx(5 * 2.0)]
    gap, _, _ = stitch([chunk(image, 0, 20), chunk(image, 25, 50)], order=1)
    assert not gap.data[:, :, 20:25].any() and gap.data[:, :, 19].all()


def test_far_apart_chunks_are_refused_unless_forced():
    image = volume()
    far = Image(chunk(image, 20, 50).data, chunk(image, 20, 50).affine.copy())
    far.affine[2, 3] += 200
    with pytest.raises(MssegError, match="different subjects"):
        stitch([chunk(image, 0, 20), far], names=["a.nii.gz", "b.nii.gz"])
    stitched, _, report = stitch([chunk(image, 0, 20), far], force=True, order=1)
    assert report.gaps_mm and report.gaps_mm[0] > 190


def test_mixed_resolutions_take_the_finest_spacing():
    from msseg.preprocess.resample import resample_to_spacing

    image = volume()
    coarse = resample_to_spacing(chunk(image, 20, 50), (1.6, 1.6, 4.0))
    grid, _ = output_grid([chunk(image, 0, 25), coarse])
    np.testing.assert_allclose(np.linalg.norm(grid.affine[:3, :3], axis=0), SPACING)
    grid, _ = output_grid([chunk(image, 0, 25), coarse], min_spacing=1.0)
    np.testing.assert_allclose(np.linalg.norm(grid.affine[:3, :3], axis=0), (1.0, 1.0, 2.0))


def test_output_rotation_is_the_smallest_box():
    image = volume()
    tilted = chunk(image, 20, 50)
    angle = np.radians(10)
    rotation = np.array([[1, 0, 0, 0], [0, np.cos(angle), -np.sin(angle), 0],
                         [0, np.sin(angle), np.cos(angle), 0], [0, 0, 0, 1]])
    tilted = Image(tilted.data, rotation @ tilted.affine)
    grid, index = output_grid([chunk(image, 0, 25), chunk(image, 10, 22), tilted])
    assert index in (0, 1)      # both share the unrotated axes; the tilted one gives a bigger box
    assert contains(chunk(image, 0, 25), chunk(image, 10, 22))
