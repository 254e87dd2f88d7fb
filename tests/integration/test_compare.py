"""`msseg compare`: synthetic pairs with known changes, and a real scan with synthesised
lesions moved by a known rigid transform (registration must undo it)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from msseg import io
from msseg.cli.main import main
from msseg.image import Image
from msseg.longitudinal import Rules, classify, compare, mask_on_baseline
from msseg.preprocess.registration import to_sitk


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


BRAIN = "brain/3d-mr-ms/MNI/patient07"


def _brain_pair(shared_data, tmp_path):
    """patient07's real FLAIR and gold-standard lesions (lesions of ≥ 30 voxels) as the
    baseline; the follow-up session: one lesion removed, one enlarged (dilated by 2 voxels
    inside the brain), one new sphere in the white matter, the scan and its lesions moved by
    a known rigid motion (5°, (3, −2, 2) mm). Returns paths and the truth on the baseline
    grid."""
    import cc3d
    from scipy import ndimage

    from msseg.preprocess.resample import resample_to_grid

    folder = shared_data / BRAIN
    image = io.load(next(folder.glob("FLAIR_*.nii.gz")))
    gold = io.load(next(folder.glob("GOLD_STANDARD_*.nii.gz"))).data > 0
    labels = cc3d.connected_components(gold, connectivity=26)
    sizes = np.bincount(labels.ravel())
    keep = [i for i in range(1, len(sizes)) if sizes[i] >= 30]
    base = np.isin(labels, keep)
    by_size = sorted(keep, key=lambda i: sizes[i])
    removed, enlarged = by_size[len(by_size) // 2], by_size[-3]
    follow = base & (labels != removed)
    brain = image.data > 0
    grown = ndimage.binary_dilation(labels == enlarged, iterations=2) & brain
    follow |= grown
    assert grown.sum() >= 1.5 * sizes[enlarged]
    distance = ndimage.distance_transform_edt(~ndimage.binary_dilation(base | follow,
                                                                        iterations=8))
    inner = ndimage.binary_erosion(brain, iterations=15)
    centre = np.unravel_index(np.argmax(np.where(inner, distance, 0)), base.shape)
    grid = np.indices(base.shape)
    sphere = sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)) <= 9
    follow |= sphere
    centre_mm = (image.affine @ np.array([*(np.array(image.shape) / 2), 1.0]))[:3]
    motion = _rigid(5.0, np.array([3.0, -2.0, 2.0]), centre_mm)
    moved_affine = np.linalg.inv(motion) @ image.affine

    def moved(data: np.ndarray, order: int) -> np.ndarray:
        return resample_to_grid(Image(data.astype(np.float32), moved_affine), image.shape,
                                image.affine, order=order).data

    paths = {k: tmp_path / f"{k}.nii.gz" for k in ("b", "f", "bi", "fi")}
    io.save_like(base.astype(np.uint8), image, paths["b"])
    io.save_like((moved(follow, 1) >= 0.5).astype(np.uint8), image, paths["f"])
    io.save_like(image.data, image, paths["bi"], np.float32)
    io.save_like(moved(image.data, 3), image, paths["fi"], np.float32)
    truth_change = np.zeros(base.shape, np.uint8)
    truth_change[follow & ~base] = 1
    truth_change[base & ~follow] = 2
    return paths, truth_change, len(keep)


@pytest.mark.slow
def test_brain_pair_with_known_changes_exact_and_reproducible(shared_data, tmp_path):
    """Issue 31's acceptance for compare: statuses exact, the change mask within Dice 0.9 of
    the truth, and two runs with the same inputs give the same files."""
    paths, truth, n_kept = _brain_pair(shared_data, tmp_path)
    runs = []
    for run in ("one", "two"):
        out = tmp_path / run
        assert main(["compare", "-b", str(paths["b"]), "-f", str(paths["f"]),
                     "--baseline-image", str(paths["bi"]), "--followup-image",
                     str(paths["fi"]), "-o", str(out)]) == 0
        runs.append(out)
    summary = pd.read_csv(runs[0] / "summary.csv").iloc[0]
    assert (summary.new, summary.enlarging, summary.resolved) == (1, 1, 1)
    assert (summary.shrinking, summary["below-size"]) == (0, 0)
    assert summary.stable == n_kept - 2
    change = io.load(runs[0] / "change.nii.gz").data
    for code in (1, 2):
        a, b = change == code, truth == code
        assert 2 * (a & b).sum() / (a.sum() + b.sum()) >= 0.9, code
    lesions = pd.read_csv(runs[0] / "lesions.csv")
    assert {"centroid_x_mm", "centroid_y_mm", "centroid_z_mm"} <= set(lesions.columns)
    for name in ("lesions.csv", "summary.csv", "transform.tfm"):
        assert (runs[0] / name).read_bytes() == (runs[1] / name).read_bytes(), name
    for name in ("status.nii.gz", "change.nii.gz"):
        np.testing.assert_array_equal(io.load(runs[0] / name).data,
                                      io.load(runs[1] / name).data)


@pytest.mark.parametrize("kind", ["image as mask", "probability map", "bad threshold",
                                  "masks and --segment", "--segment without images"])
def test_bad_inputs_are_refused_in_one_line(shared_data, tmp_path, capsys, kind):
    folder = shared_data / BRAIN
    flair = next(folder.glob("FLAIR_*.nii.gz"))
    gold = next(folder.glob("GOLD_STANDARD_*.nii.gz"))
    mask = io.load(gold)
    soft = io.save_like((mask.data > 0) * 0.8, mask, tmp_path / "soft.nii.gz", np.float32)
    out = tmp_path / "out"
    argv = {"image as mask": ["-b", gold, "-f", flair],
            "probability map": ["-b", gold, "-f", soft],
            "bad threshold": ["-b", gold, "-f", soft, "--threshold", "1.5"],
            "masks and --segment": ["-b", gold, "-f", gold, "--baseline-image", flair,
                                    "--followup-image", flair, "--segment", "brain_lesion_flair"],
            "--segment without images": ["--segment", "brain_lesion_flair"]}[kind]
    assert main(["compare", *map(str, argv), "-o", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("msseg compare: error: ")
    assert not out.exists()


def test_probability_maps_with_threshold_no_register_and_a_poor_overlap_warning(tmp_path,
                                                                                capsys):
    base = np.zeros((30, 30, 30), np.float32)
    _box(base, (5, 5, 5), (4, 4, 4))
    follow = base.copy()
    _box(follow, (20, 20, 20), (3, 3, 3))
    paths = {}
    for name, data, shift in (("b", base * 0.9, 0.0), ("f", follow * 0.7, 0.0),
                              ("far", follow * 0.7, 25.0)):
        affine = np.eye(4)
        affine[0, 3] = shift
        paths[name] = io.save(Image(data, affine), tmp_path / f"{name}.nii.gz")
    out = tmp_path / "out"
    assert main(["compare", "-b", str(paths["b"]), "-f", str(paths["f"]), "--threshold", "0.5",
                 "-o", str(out)]) == 0
    summary = pd.read_csv(out / "summary.csv").iloc[0]
    assert (summary.new, summary.stable, summary.gained_mm3) == (1, 1, 27.0)
    assert "overlap" not in capsys.readouterr().err
    assert main(["compare", "-b", str(paths["b"]), "-f", str(paths["far"]), "--threshold",
                 "0.5", "-o", str(tmp_path / "far")]) == 0
    # voxel-centre boxes 29 mm wide, 25 mm apart along x: IoU = 4 / (2·29 − 4) = 7%
    assert "fields of view overlap by 7%" in capsys.readouterr().err
    # images already aligned: --no-register compares by the headers, no transform written
    images = {k: io.save(Image(base + 1.0, np.eye(4)), tmp_path / f"{k}_img.nii.gz")
              for k in ("b", "f")}
    aligned = tmp_path / "aligned"
    assert main(["compare", "-b", str(paths["b"]), "-f", str(paths["f"]), "--threshold", "0.5",
                 "--baseline-image", str(images["b"]), "--followup-image", str(images["f"]),
                 "--no-register", "-o", str(aligned)]) == 0
    assert not (aligned / "transform.tfm").exists()
    assert pd.read_csv(aligned / "summary.csv").iloc[0].new == 1


def test_segment_both_sessions_with_one_model(shared_data, tmp_path):
    """--segment: the same FLAIR as both sessions, segmented by brain_lesion_flair on one
    grid: every lesion stable, no voxel changed."""
    flair = next((shared_data / BRAIN).glob("FLAIR_*.nii.gz"))
    out = tmp_path / "out"
    assert main(["compare", "--baseline-image", str(flair), "--followup-image", str(flair),
                 "--segment", "brain_lesion_flair", "--no-register", "-o", str(out)]) == 0
    summary = pd.read_csv(out / "summary.csv").iloc[0]
    assert summary.stable > 0 and summary.new == summary.resolved == summary.enlarging == 0
    assert summary.gained_mm3 == summary.lost_mm3 == 0
    assert not io.load(out / "change.nii.gz").data.any()
    assert '"segment": "brain_lesion_flair"' in (out / "rules.json").read_text()
