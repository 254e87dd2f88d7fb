"""Straightening of a synthetic curved tube: the straightened tube stays on the straight line,
round trips keep masks and lesion volumes, the two fields are inverses, the frame does not
twist, and SimpleITK applies msseg's fields as msseg does."""

from __future__ import annotations

import numpy as np
import pytest

from msseg import io
from msseg.evaluation.voxel import dice
from msseg.image import Image
from msseg.preprocess import straighten as st

SHAPE = (64, 64, 120)   # 1 mm isotropic, RAS


def centre(z: np.ndarray) -> np.ndarray:
    return np.column_stack([32 + 9 * np.sin(z / 25.0), 30 + 6 * np.cos(z / 40.0)])


def tube(radius: float = 3.5, lesions: bool = False) -> tuple[Image, Image, Image]:
    """A curved tube (cord) in a bright background, and small lesions inside it."""
    i, j, k = np.indices(SHAPE, dtype=float)
    c = centre(k[0, 0])
    d2 = (i - c[:, 0][None, None]) ** 2 + (j - c[:, 1][None, None]) ** 2
    cord = d2 <= radius ** 2
    lesion = np.zeros(SHAPE, bool)
    for z0, offset in ((35, (1.0, 0.0)), (80, (-1.0, 1.0))):
        cz = centre(np.array([z0]))[0] + offset
        lesion |= ((i - cz[0]) ** 2 + (j - cz[1]) ** 2) / 2.5 ** 2 + (k - z0) ** 2 / 6 ** 2 <= 1
    lesion &= cord
    data = np.where(cord, 60.0, 200.0) + np.where(lesion, 80.0, 0.0)
    affine = np.eye(4)
    affine[:3, 3] = (-30, -40, -50)
    return (Image(data.astype(np.float32), affine), Image(cord.astype(np.uint8), affine),
            Image(lesion.astype(np.uint8), affine))


@pytest.fixture(scope="module")
def straightened():
    image, cord, lesion = tube()
    curve = st.fit_curve(st.centerline_of_mask(cord), smoothing_mm=20)
    geometry = st.Straightening.around(curve, (1.0, 1.0, 1.0), 35.0)
    return image, cord, lesion, geometry


def straight_mask(mask: Image, geometry) -> Image:
    out = st.straighten_image(mask.with_data(mask.data > 0), geometry, 1)
    return out.with_data((out.data >= 0.5).astype(np.uint8))


def test_straightened_tube_stays_on_the_straight_line(straightened):
    image, cord, _, geometry = straightened
    complete = st.complete_slices(geometry, image)
    assert not complete[0] and complete[5:-5].all()    # the first plane tilts out of the volume
    accuracy = st.straightening_accuracy(straight_mask(cord, geometry), complete)
    assert accuracy["slices"] > 100
    assert accuracy["max_distance_mm"] < 0.5    # half a voxel
    assert accuracy["rms_distance_mm"] < 0.25


def test_round_trip_keeps_masks_and_lesion_volumes(straightened):
    image, cord, lesion, geometry = straightened
    for mask, min_dice in ((cord, 0.95), (lesion, 0.9)):
        back = st.unstraighten(straight_mask(mask, geometry), geometry, image) >= 0.5
        assert dice(back, mask.data > 0) >= min_dice
    straight = straight_mask(lesion, geometry)
    back = st.unstraighten(straight, geometry, image) >= 0.5
    volume = int(lesion.data.sum())
    assert abs(int(straight.data.sum()) - volume) / volume < 0.05   # 1 mm voxels both sides
    assert abs(int(back.sum()) - volume) / volume < 0.05


def test_fields_are_inverse_of_each_other_near_the_cord(straightened):
    image, _, _, geometry = straightened
    c2s = st.displacement_field(geometry, geometry.shape, geometry.affine, to_straight=False)
    s2c = st.displacement_field(geometry, image.shape, image.affine, to_straight=True)
    # straight voxel p -> curved q = p + d_c2s(p) -> back p' = q + d_s2c(q) (interpolated)
    ijk = np.stack(np.meshgrid(np.arange(10, 25), np.arange(10, 25), np.arange(5, 110, 5),
                               indexing="ij"), -1).reshape(-1, 3)
    p = ijk @ geometry.affine[:3, :3].T + geometry.affine[:3, 3]
    q = p + c2s[tuple(ijk.T)][:, 0] * st.LPS
    back_field = [Image(s2c[..., 0, c], image.affine) for c in range(3)]
    d = np.stack([st.sample(f, q, 1) for f in back_field], -1) * st.LPS
    error = np.linalg.norm(q + d - p, axis=1)
    assert error.max() < 0.5                     # half a voxel (1 mm voxels)


def test_rotation_minimising_frame_does_not_twist_a_planar_curve():
    z = np.linspace(0, 100, 200)
    points = np.column_stack([10 * np.sin(z / 30), np.zeros_like(z), z])   # in the x-z plane
    curve = st.fit_curve(points, smoothing_mm=0)
    np.testing.assert_allclose(curve.binormals[:, 1], 1, atol=1e-6)     # n2 stays +y
    np.testing.assert_allclose(np.einsum("ij,ij->i", curve.normals, curve.tangents), 0,
                               atol=1e-9)


def test_simpleitk_applies_the_fields_as_msseg_does(straightened, tmp_path):
    import SimpleITK as sitk

    image, _, _, geometry = straightened
    ours = st.straighten_image(image, geometry, 1).data
    field = st.displacement_field(geometry, geometry.shape, geometry.affine, to_straight=False)
    io.save_displacement(field, geometry.affine, tmp_path / "warp.nii.gz")
    io.save_on_grid(ours, geometry.affine, tmp_path / "ref.nii.gz")
    io.save_on_grid(image.data, image.affine, tmp_path / "in.nii.gz")
    warp = sitk.ReadImage(str(tmp_path / "warp.nii.gz"), sitk.sitkVectorFloat64)
    transform = sitk.DisplacementFieldTransform(warp)
    theirs = sitk.Resample(sitk.ReadImage(str(tmp_path / "in.nii.gz")),
                           sitk.ReadImage(str(tmp_path / "ref.nii.gz")), transform,
                           sitk.sitkLinear, 0.0)
    theirs = sitk.GetArrayFromImage(theirs).transpose(2, 1, 0)
    inside = ours > 0
    np.testing.assert_allclose(theirs[inside], ours[inside], atol=0.5)   # intensities 60…280
    # and msseg's own field application reproduces its straightening
    applied = st.apply_field(image, field, geometry.affine, geometry.shape, geometry.affine)
    np.testing.assert_allclose(applied, ours, atol=1e-3)


def test_centerline_of_mask_refuses_holes():
    _, cord, _ = tube()
    holes = cord.data.copy()
    holes[:, :, 10:100] = 0
    holes[:, :, 50] = cord.data[:, :, 50]
    from msseg.errors import MssegError

    with pytest.raises(MssegError, match="empty on"):
        st.centerline_of_mask(cord.with_data(holes))
