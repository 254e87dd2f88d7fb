"""Image geometry, NIfTI round trips, reorientation and resampling."""

from __future__ import annotations

import itertools

import nibabel as nib
import numpy as np
import pytest

from conftest import spine_images
from msseg import io
from msseg.errors import MssegError
from msseg.image import SCT_RPI, Image
from msseg.preprocess.orient import reorient, reorient_like, to_rpi
from msseg.preprocess.resample import resample_to_spacing, resampled_grid


def test_spacing_and_orientation_derived_from_affine():
    affine = np.array([[0, 0, 3.0, 10], [-0.5, 0, 0, 20], [0, 0.8, 0, -5], [0, 0, 0, 1]])
    img = Image(np.zeros((4, 5, 6)), affine)
    assert img.spacing == (0.5, 0.8, 3.0)
    assert img.orientation == "PSR"
    assert img.voxel_volume_mm3 == pytest.approx(1.2)
    np.testing.assert_allclose(img.world_coordinates([[1, 1, 1]]), [[13, 19.5, -4.2]])


def test_sct_rpi_is_nibabel_las():
    assert SCT_RPI == "LAS"


ALL_CODES = ["".join(p) for perm in itertools.permutations([("L", "R"), ("A", "P"), ("S", "I")])
             for p in itertools.product(*perm)]


@pytest.mark.parametrize("code", ALL_CODES)
def test_reorient_round_trip_every_orientation(code):
    rng = np.random.default_rng(0)
    base = Image(rng.random((3, 4, 5)), np.diag([0.5, 0.7, 2.0, 1.0]))
    img = reorient(base, code)
    assert img.orientation == code
    rpi = to_rpi(img)
    assert rpi.orientation == "LAS"
    # same world position of every voxel value: compare against base put in LAS directly
    np.testing.assert_array_equal(rpi.data, to_rpi(base).data)
    np.testing.assert_allclose(rpi.affine, to_rpi(base).affine)
    back = reorient_like(rpi, img)
    np.testing.assert_array_equal(back.data, img.data)
    np.testing.assert_array_equal(back.affine, img.affine)


def test_reorient_rpi_and_back_exact_on_shared_data(shared_data):
    seen = set()
    for path in spine_images(shared_data):
        img = io.load(path)
        seen.add(img.orientation)
        rpi = to_rpi(img)
        assert rpi.orientation == "LAS"
        world = rpi.world_coordinates([[0, 0, 0], [3, 2, 1]])
        idx = np.round(np.linalg.solve(img.affine, np.c_[world, np.ones(2)].T)[:3].T).astype(int)
        assert rpi.data[0, 0, 0] == img.data[tuple(idx[0])]
        assert rpi.data[3, 2, 1] == img.data[tuple(idx[1])]
        back = reorient_like(rpi, img)
        np.testing.assert_array_equal(back.data, img.data)
        assert back.header is img.header
    assert {"LAS", "PSR", "RAS"} <= seen


def test_save_like_keeps_exact_header_on_shared_data(shared_data, tmp_path):
    for path in spine_images(shared_data):
        img = io.load(path)
        out = io.save_like(img.data > 0, img, tmp_path / "mask.nii.gz")
        a, b = nib.load(path).header, nib.load(out).header
        for key in io.GEOMETRY_FIELDS:
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"{path.name}: {key}")
        np.testing.assert_array_equal(a.get_qform(), b.get_qform())
        np.testing.assert_array_equal(a.get_sform(), b.get_sform())
        assert a.get_zooms() == b.get_zooms()
        assert b.get_data_dtype() == np.uint8


def test_save_load_round_trip_without_header(tmp_path):
    affine = np.diag([-0.35, 0.35, 5.0, 1.0])
    img = Image(np.arange(24, dtype=np.float32).reshape(2, 3, 4), affine)
    out = io.save(img, tmp_path / "x.nii.gz")
    back = io.load(out)
    np.testing.assert_array_equal(back.data, img.data)
    np.testing.assert_allclose(back.affine, affine, atol=1e-6)  # NIfTI stores float32
    assert not list(tmp_path.glob(".tmp-*"))


def test_resample_updates_affine_world_coordinates_of_voxel_centres():
    affine = np.array([[0, 0, -2.0, 30], [0.5, 0, 0, -10], [0, 0.5, 0, 4], [0, 0, 0, 1]])
    img = Image(np.zeros((40, 30, 10), np.float32), affine)
    new_spacing = (0.25, 1.0, 4.0)
    shape, new_affine = resampled_grid(img, new_spacing)
    assert shape == (80, 15, 5)
    ratio = np.array(new_spacing) / np.array(img.spacing)
    for i in [(0, 0, 0), (79, 14, 4), (10, 3, 2)]:
        old_index = (np.array(i) + 0.5) * ratio - 0.5
        np.testing.assert_allclose(new_affine[:3, :3] @ i + new_affine[:3, 3],
                                   affine[:3, :3] @ old_index + affine[:3, 3])
    out = Image(np.zeros(shape), new_affine)
    assert out.spacing == pytest.approx(new_spacing)
    assert out.orientation == img.orientation
    # the field of view (outer corners of the corner voxels) is unchanged
    corner_old = affine[:3, :3] @ np.full(3, -0.5) + affine[:3, 3]
    corner_new = new_affine[:3, :3] @ np.full(3, -0.5) + new_affine[:3, 3]
    np.testing.assert_allclose(corner_old, corner_new)


def test_resampled_values_follow_world_coordinates():
    """A field linear in world x must stay the same linear field after resampling."""
    affine = np.diag([0.5, 0.5, 3.0, 1.0])
    affine[:3, 3] = [5, -2, 7]
    img = Image(np.zeros((20, 20, 8), np.float32), affine)
    world = img.world_coordinates(np.indices(img.shape).reshape(3, -1).T)
    img = img.with_data((2 * world[:, 0] + world[:, 2]).reshape(img.shape).astype(np.float32))
    out = resample_to_spacing(img, (1.0, 1.0, 1.5), order=1)
    w = out.world_coordinates(np.indices(out.shape).reshape(3, -1).T)
    expected = (2 * w[:, 0] + w[:, 2]).reshape(out.shape)
    inner = (slice(1, -1), slice(1, -1), slice(1, -1))
    np.testing.assert_allclose(out.data[inner], expected[inner], atol=1e-4)


def test_resample_labels_nearest_keeps_dtype_and_values():
    img = Image(np.random.default_rng(1).integers(0, 3, (10, 10, 4)).astype(np.uint8),
                np.diag([1.0, 1.0, 2.0, 1.0]))
    out = resample_to_spacing(img, (0.5, 0.5, 2.0), order=0)
    assert out.data.dtype == np.uint8
    np.testing.assert_array_equal(out.data[::2, ::2], img.data)


@pytest.mark.parametrize("content,message", [
    (None, "no such file"), (b"not a nifti", "not a valid NIfTI header"),
])
def test_load_rejects_missing_and_corrupt(tmp_path, content, message):
    path = tmp_path / "x.nii.gz"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(MssegError, match=message):
        io.load(path)


def test_load_rejects_non_nifti_4d_and_nan(tmp_path):
    (tmp_path / "x.png").write_bytes(b"\x89PNG")
    with pytest.raises(MssegError, match="not a NIfTI"):
        io.load(tmp_path / "x.png")
    nib.save(nib.Nifti1Image(np.zeros((2, 2, 2, 3), np.float32), np.eye(4)), tmp_path / "4d.nii")
    with pytest.raises(MssegError, match="3D"):
        io.load(tmp_path / "4d.nii")
    data = np.zeros((2, 2, 2), np.float32)
    data[0, 0, 0] = np.nan
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "nan.nii")
    with pytest.raises(MssegError, match="NaN"):
        io.load(tmp_path / "nan.nii")


def test_bad_quaternion_file_is_refused(shared_data):
    with pytest.raises(MssegError, match="bad_quaternion"):
        io.load(shared_data / "spine/sct_testing_data/_history/bad_quaternion.nii.gz")


def test_crop_keeps_world_positions():
    from msseg.image import Image

    affine = np.array([[-0.5, 0, 0, 10], [0, 0.7, 0, -3], [0, 0, 2.0, 4], [0, 0, 0, 1]])
    image = Image(np.arange(6 * 5 * 4, dtype=np.float32).reshape(6, 5, 4), affine)
    sub = image.crop((slice(2, 5), slice(1, 4), slice(None)))
    assert sub.shape == (3, 3, 4)
    np.testing.assert_allclose(sub.world_coordinates([[0, 0, 0]]),
                               image.world_coordinates([[2, 1, 0]]))
    assert sub.data[1, 2, 3] == image.data[3, 3, 3]


def test_masks_keep_nifti2_and_trailing_singleton_dimension(tmp_path):
    data = np.random.default_rng(3).random((5, 4, 3, 1)).astype(np.float32)
    affine = np.diag([0.5, 0.6, 2.0, 1.0])
    for klass, name in ((nib.Nifti2Image, "two.nii.gz"), (nib.Nifti1Image, "four_d.nii.gz")):
        klass(data, affine).to_filename(tmp_path / name)
        image = io.load(tmp_path / name)
        assert image.shape == (5, 4, 3)
        io.save_like(image.data > 0.5, image, tmp_path / f"mask_{name}")
        out = nib.load(tmp_path / f"mask_{name}")
        assert type(out) is klass and out.shape == (5, 4, 3, 1)
        np.testing.assert_array_equal(out.get_fdata()[..., 0], image.data > 0.5)
        np.testing.assert_array_equal(out.affine, image.affine)


def test_float64_intensities_beyond_float32_are_refused(tmp_path):
    data = np.ones((3, 3, 3))
    data[0, 0, 0] = 1e300
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "big.nii")
    with pytest.raises(MssegError, match="beyond 32-bit floats"):
        io.load(tmp_path / "big.nii")


def test_gzip_length_counts_when_the_stored_length_is_short(tmp_path):
    import gzip

    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(b"a" * 1000) + gzip.compress(b"b" * 500))  # two members
    assert io._gzip_length(path, 1400) >= 1400
    assert io._gzip_length(path, 5000) == 1500


def test_stale_temporaries_of_dead_writers_are_removed(tmp_path):
    import os
    import socket

    dead = tmp_path / f".tmp-{socket.gethostname()}-999999999-ab.nii.gz"
    alive = tmp_path / f".tmp-{socket.gethostname()}-{os.getpid()}-cd.nii.gz"
    other_host = tmp_path / ".tmp-elsewhere-999999999-ef.csv"
    for p in (dead, alive, other_host):
        p.write_bytes(b"x")
    assert io.remove_stale_temporaries(tmp_path) == [dead]
    assert alive.exists() and other_host.exists()


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -352.0])
def test_a_header_with_an_impossible_voxel_offset_is_refused(tmp_path, value):
    """Found by the loading fuzz test: nibabel raised a bare ValueError for vox_offset NaN."""
    path = tmp_path / "x.nii"
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4)), path)
    raw = bytearray(path.read_bytes())
    raw[108:112] = np.float32(value).tobytes()   # vox_offset, little endian
    path.write_bytes(bytes(raw))
    with pytest.raises(MssegError, match="x.nii: invalid voxel data offset"):
        io.load(path)
