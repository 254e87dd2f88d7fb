"""`msseg compare`: synthetic pairs with known changes, and a real scan with synthesised
lesions moved by a known rigid transform (registration must undo it)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from msseg import io
from msseg.cli.main import main
from msseg.image import Image
from msseg.longitudinal import Rules, classify, compare, mask_on_baseline, to_sitk


def _box(mask, corner, size):
    mask[tuple(slice(c, c + s) for c, s in zip(corner, size, strict=True))] = 1


def test_classify_known_changes_by_hand():
    base = np.zeros((40, 40, 40), np.uint8)
    follow = np.zeros_like(base)
    pairs = [((2, 2, 2), (3, 3, 3), (3, 3, 3)),      # stable: 27 -> 27 voxels
             ((10, 2, 2), (3, 3, 3), (3, 3, 6)),     # enlarging: 27 -> 54
             ((20, 2, 2), (4, 4, 4), (2, 2, 4)),     # shrinking: 64 -> 16
             ((30, 2, 2), (3, 3, 3), None),          # resolved
             ((10, 20, 2), (3, 3, 3), (3, 3, 4))]    # +33%: stable
    for corner, before, after in pairs:
        _box(base, corner, before)
        if after is not None:
            _box(follow, corner, after)
    _box(follow, (2, 20, 20), (2, 2, 1))                                        # new, 4 voxels
    _box(follow, (30, 30, 30), (1, 1, 2))                                       # 2 voxels
    table, status = classify(base, follow, voxel_mm3=0.5)
    by_volume = {(r.volume_baseline_mm3, r.volume_followup_mm3): r.status
                 for r in table.itertuples()}
    assert by_volume == {(13.5, 13.5): "stable", (13.5, 27.0): "enlarging",
                         (32.0, 8.0): "shrinking", (13.5, 0.0): "resolved",
                         (0.0, 2.0): "new", (0.0, 1.0): "below-size",
                         (13.5, 18.0): "stable"}                  # +33% < +50%: stable
    assert status[3, 3, 3] == 3 and status[11, 3, 6] == 2 and status[31, 3, 3] == 5
    assert status[2, 20, 20] == 1 and status[30, 30, 30] == 6
    # stricter rules: +33% is enlarging at enlarge = 0.3; 2 voxels are new at min 2
    strict, _ = classify(base, follow, 0.5, Rules(min_new_voxels=2, enlarge=0.3))
    assert (strict.status == "enlarging").sum() == 2 and (strict.status == "new").sum() == 2


def test_merge_is_compared_with_the_sum():
    base = np.zeros((20, 20, 20), np.uint8)
    _box(base, (2, 2, 2), (3, 3, 3))
    _box(base, (2, 6, 2), (3, 3, 3))
    follow = np.zeros_like(base)
    _box(follow, (2, 2, 2), (3, 7, 3))        # one lesion joining both: 63 vs 54 voxels
    table, _ = classify(base, follow, 1.0)
    assert table.status.tolist() == ["stable"] and table.baseline_lesions[0] == "1;2"


def test_sitk_conversion_keeps_world_points(shared_data):
    image = io.load(shared_data / "spine/sct_testing_data/t2/t2.nii.gz")     # PSR
    converted = to_sitk(image)
    voxel = (10, 20, 30)
    world_ras = image.affine @ np.array([*voxel, 1.0])
    lps = np.array(converted.TransformIndexToPhysicalPoint(voxel))
    np.testing.assert_allclose(lps, world_ras[:3] * [-1, -1, 1], atol=1e-4)


def _rigid(angle_deg: float, shift_mm: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """4×4 world transform: rotation about the S–I axis through ``centre``, then a shift."""
    t = np.radians(angle_deg)
    rot = np.eye(4)
    rot[:2, :2] = [[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]
    to, back = np.eye(4), np.eye(4)
    to[:3, 3], back[:3, 3] = -centre, centre + shift_mm
    return back @ rot @ to


@pytest.mark.slow
def test_real_scan_moved_by_known_rigid_transform(shared_data, tmp_path):
    """sct_testing_data's real T2w (PSR, 1 mm) with three synthesised lesions in its cord;
    the follow-up is the same scan moved by 6° and (4, −3, 2) mm, its lesions moved with it,
    one lesion doubled and one new. Registration recovers the motion; statuses follow."""
    folder = shared_data / "spine/sct_testing_data/t2"
    image = io.load(folder / "t2.nii.gz")
    cord = io.load(folder / "t2_seg-manual.nii.gz").data > 0
    cord_voxels = np.argwhere(cord)
    picks = cord_voxels[np.linspace(0, len(cord_voxels) - 1, 5).round().astype(int)[1:4]]
    base = np.zeros(image.shape, np.uint8)
    for p in picks:
        base[tuple(slice(max(c - 1, 0), c + 2) for c in p)] = 1        # 3×3×3 lesions
    follow = base.copy()
    grow = picks[1]
    follow[tuple(slice(max(c - 2, 0), c + 3) for c in grow)] = 1        # 27 -> 125 voxels
    new = cord_voxels[len(cord_voxels) // 8]
    follow[tuple(slice(c - 1, c + 2) for c in new)] = 1
    base &= cord | (base > 0)
    centre = (image.affine @ np.array([*(np.array(image.shape) / 2), 1.0]))[:3]
    motion = _rigid(6.0, np.array([4.0, -3.0, 2.0]), centre)
    # the follow-up session: the same header, the content moved: follow-up(x) = base(M x)
    moved_affine = np.linalg.inv(motion) @ image.affine
    from msseg.preprocess.resample import resample_to_grid

    def moved(img: Image, order: int) -> np.ndarray:
        return resample_to_grid(Image(img.data.astype(np.float32), moved_affine),
                                img.shape, img.affine, order=order).data

    follow_image = image.with_data(moved(image, 3))
    follow_mask = image.with_data((moved(image.with_data(follow), 1) >= 0.5).astype(np.uint8))
    paths = {"b": tmp_path / "b.nii.gz", "f": tmp_path / "f.nii.gz",
             "bi": folder / "t2.nii.gz", "fi": tmp_path / "fi.nii.gz"}
    io.save_like(base, image, paths["b"])
    io.save_like(follow_mask.data, image, paths["f"])
    io.save_like(follow_image.data, image, paths["fi"], np.float32)
    # without registration the motion makes changes that are not there
    unregistered = compare(io.load(paths["b"]), io.load(paths["f"]))
    assert unregistered.summary["resolved"] >= 2 and unregistered.summary["new"] >= 3
    out = tmp_path / "out"
    assert main(["compare", "-b", str(paths["b"]), "-f", str(paths["f"]), "--baseline-image",
                 str(paths["bi"]), "--followup-image", str(paths["fi"]), "-o", str(out)]) == 0
    summary = pd.read_csv(out / "summary.csv").iloc[0]
    assert (summary.new, summary.enlarging, summary.stable, summary.resolved) == (1, 1, 2, 0)
    status = io.load(out / "status.nii.gz")
    np.testing.assert_array_equal(status.affine, image.affine)
    on_base = io.load(out / "followup_on_baseline.nii.gz").data > 0
    truth = follow > 0
    assert 2 * (on_base & truth).sum() / (on_base.sum() + truth.sum()) > 0.8
    import SimpleITK as sitk

    found = sitk.ReadTransform(str(out / "transform.tfm"))
    # the recovered transform maps baseline points (LPS) to the follow-up's: y -> M⁻¹ y
    for p in picks:
        world = image.affine @ np.array([*p, 1.0])
        expected = (np.linalg.inv(motion) @ world)[:3] * [-1, -1, 1]
        got = np.array(found.TransformPoint(tuple(world[:3] * [-1, -1, 1])))
        assert np.linalg.norm(got - expected) < 1.0
    assert (out / "compare.png").stat().st_size > 10000
    # refusals: outputs exist; only one image given
    assert main(["compare", "-b", str(paths["b"]), "-f", str(paths["f"]), "-o", str(out)]) == 1
    assert main(["compare", "-b", str(paths["b"]), "-f", str(paths["f"]), "--baseline-image",
                 str(paths["bi"]), "-o", str(tmp_path / "o2")]) == 1
    assert not (tmp_path / "o2").exists()


def test_header_alignment_without_images():
    base = np.zeros((20, 20, 20), np.uint8)
    _box(base, (5, 5, 5), (3, 3, 3))
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    shifted = affine.copy()
    shifted[:3, 3] = [-2, 0, 0]       # the follow-up grid starts 2 mm further left
    follow = np.zeros_like(base)
    _box(follow, (7, 5, 5), (3, 3, 3))  # the same world position
    moved = mask_on_baseline(Image(follow, shifted), Image(base, affine))
    np.testing.assert_array_equal(moved.data, base)
