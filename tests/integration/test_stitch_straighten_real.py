"""`msseg stitch`, `msseg straighten`, `msseg warp` and segmentation in straightened space on
real scans of ../shared/data: the sagittal whole-cervical T2w errsm_24 (1 mm isotropic) with its
manual cord mask, cut into three overlapping axial chunks (one of them on a rotated and shifted
grid, as a patient's motion between chunks gives, one at another resolution), with lesions
synthesised across the overlaps."""

from __future__ import annotations

import json

import cc3d
import nibabel as nib
import numpy as np
import pytest

from msseg import io
from msseg.cli.main import main
from msseg.evaluation.voxel import dice
from msseg.image import Image
from msseg.preprocess.orient import to_rpi
from msseg.preprocess.resample import resample_to_grid, resample_to_spacing

pytestmark = pytest.mark.slow
SCAN = "spine/sct_2014_testing/errsm_24/t2/t2.nii.gz"
CORD = "spine/sct_2014_testing/errsm_24/t2/t2_manual_segmentation.nii.gz"


@pytest.fixture(scope="module")
def scan(shared_data):
    image = to_rpi(io.load(shared_data / SCAN))
    cord = to_rpi(io.load(shared_data / CORD))
    cord = cord.with_data((cord.data > 0.5).astype(np.uint8))
    lesion = np.zeros(image.shape, np.uint8)
    for k in (85, 150):   # two lesions, each crossing an overlap (75-95, 140-160)
        i, j = np.argwhere(cord.data[:, :, k])[len(np.argwhere(cord.data[:, :, k])) // 2]
        lesion[i - 1:i + 2, j - 1:j + 2, k - 6:k + 6] = 1
    lesion &= cord.data
    return Image(image.data.astype(np.float32), image.affine), cord, cord.with_data(lesion)


def rotated(image: Image, degrees: float, shift_mm: tuple) -> tuple[np.ndarray, tuple]:
    """A grid like ``image``'s, rotated about its centre and shifted (the anatomy stays)."""
    a = np.radians(degrees)
    rotation = np.eye(4)
    rotation[1:3, 1:3] = [[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]
    centre = image.world_coordinates(np.array([(np.asarray(image.shape) - 1) / 2]))[0]
    move = np.eye(4)
    move[:3, 3] = centre + np.asarray(shift_mm)
    back = np.eye(4)
    back[:3, 3] = -centre
    return move @ rotation @ back @ image.affine, image.shape


def make_chunks(scan, tmp_path, variant: str = "motion"):
    """Three chunks; ``motion``: the middle one on a rotated, shifted grid; ``resolution``:
    the last one at 1.3 mm in-plane; ``cut``: all on the scan's own grid."""
    image, cord, lesion = scan
    cuts = ((0, 95), (75, 160), (140, image.shape[2]))
    paths = []
    for n, (k0, k1) in enumerate(cuts, start=1):
        box = (slice(None), slice(None), slice(k0, k1))
        parts = [image.crop(box), cord.crop(box), lesion.crop(box)]
        if n == 2 and variant == "motion":   # the middle chunk on a rotated, shifted grid
            affine, shape = rotated(parts[0], 3.0, (0.0, 1.2, 0.0))
            parts = [resample_to_grid(p, shape, affine, order=1 if i == 0 else 0)
                     for i, p in enumerate(parts)]
        if n == 3 and variant == "resolution":   # another in-plane resolution
            parts = [resample_to_spacing(p, (1.3, 1.3, 1.0), order=1 if i == 0 else 0)
                     for i, p in enumerate(parts)]
        stem = tmp_path / f"sub-01_chunk-{n}_T2w"
        for part, suffix in zip(parts, ("", "_label-SC_seg", "_label-lesion_seg"), strict=True):
            io.save(Image(part.data if suffix == "" else (part.data > 0.5).astype(np.uint8),
                          part.affine), f"{stem}{suffix}.nii.gz")
        paths.append(stem)
    return paths


@pytest.mark.parametrize("variant,min_dice", [("cut", 0.999), ("motion", 0.98),
                                              ("resolution", 0.95)])
def test_stitch_three_chunks_back_into_the_scan(scan, tmp_path, variant, min_dice):
    image, cord, lesion = scan
    stems = make_chunks(scan, tmp_path, variant)
    chunks = [f"{s}.nii.gz" for s in stems]
    labels = [f"{s}{x}.nii.gz" for s in stems for x in ("_label-SC_seg", "_label-lesion_seg")]
    out = tmp_path / "out" / "sub-01_T2w.nii.gz"
    assert main(["stitch", *chunks, "-o", str(out), "--labels", *labels]) == 0
    stitched = io.load(out)
    np.testing.assert_allclose(stitched.spacing, image.spacing, atol=1e-4)  # the finest
    # the original, on the stitched grid, inside the covered region
    original = resample_to_grid(image, stitched.shape, stitched.affine, order=1).data
    covered = stitched.data != 0
    assert np.corrcoef(original[covered], stitched.data[covered])[0, 1] >= 0.99
    s_cord = io.load(tmp_path / "out" / "sub-01_T2w_label-SC_seg.nii.gz").data > 0
    ref_cord = resample_to_grid(cord, stitched.shape, stitched.affine, order=0).data > 0
    print(f"{variant}: cord Dice {dice(s_cord, ref_cord):.4f}")
    assert dice(s_cord, ref_cord) >= min_dice
    s_lesion = io.load(tmp_path / "out" / "sub-01_T2w_label-lesion_seg.nii.gz").data
    assert cc3d.connected_components(s_lesion > 0, return_N=True)[1] == \
        cc3d.connected_components(lesion.data > 0, return_N=True)[1] == 2
    # world coordinates: the stitched image holds each chunk's value at the world position
    # of the chunk's voxel centres (on the scan's own grid: exactly, at voxel centres)
    for path in chunks:
        part = io.load(path)
        ijk = np.argwhere(part.data > np.percentile(part.data, 50))[::97]
        world = part.world_coordinates(ijk)
        inverse = np.linalg.inv(stitched.affine)
        at = world @ inverse[:3, :3].T + inverse[:3, 3]
        if variant == "cut":
            np.testing.assert_allclose(at, np.round(at), atol=1e-4)
            values = stitched.data[tuple(np.round(at).astype(int).T)]
            alone = (at[:, 2] < 75) | (at[:, 2] > 160) | ((at[:, 2] > 95) & (at[:, 2] < 140))
            np.testing.assert_allclose(values[alone], part.data[tuple(ijk[alone].T)],
                                       rtol=1e-4)
        from scipy import ndimage

        values = ndimage.map_coordinates(stitched.data, at.T, order=1)
        assert np.corrcoef(values, part.data[tuple(ijk.T)])[0, 1] >= 0.99


def test_stitch_folder_writes_bids_derivative_names(scan, tmp_path):
    make_chunks(scan, tmp_path / "bids" / "sub-01" / "anat", "cut")
    out = tmp_path / "derivatives"
    assert main(["stitch", str(tmp_path / "bids"), "-o", str(out)]) == 0
    names = sorted(p.name for p in (out / "sub-01" / "anat").iterdir())
    assert names == ["sub-01_T2w.nii.gz", "sub-01_T2w_label-SC_seg.nii.gz",
                     "sub-01_T2w_label-lesion_seg.nii.gz"]
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    assert main(["stitch", str(tmp_path / "bids"), "-o", str(out)]) == 1   # no overwrite


def test_stitch_bad_inputs(scan, tmp_path, capsys):
    image, cord, _ = scan
    a = tmp_path / "a_chunk-1_T2w.nii.gz"
    b = tmp_path / "b_chunk-2_T2w.nii.gz"
    io.save(image.crop((slice(None), slice(None), slice(0, 80))), a)
    far = image.crop((slice(None), slice(None), slice(100, 200)))
    far = Image(far.data, far.affine.copy())
    far.affine[0, 3] += 300   # another subject, far away
    io.save(far, b)
    out = tmp_path / "o.nii.gz"
    assert main(["stitch", str(a), str(b), "-o", str(out)]) == 1
    assert "different subjects" in capsys.readouterr().err and not out.exists()
    four_d = tmp_path / "d.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4, 3), np.float32), np.eye(4)), four_d)
    assert main(["stitch", str(a), str(four_d), "-o", str(out)]) == 1
    assert "3D" in capsys.readouterr().err and not out.exists()
    c = tmp_path / "c_chunk-2_T2w.nii.gz"
    io.save(image.crop((slice(None), slice(None), slice(60, 140))), c)
    small = tmp_path / "a_chunk-1_T2w_label-SC_seg.nii.gz"
    io.save(cord.crop((slice(0, 20), slice(None), slice(0, 80))), small)
    good = tmp_path / "c_chunk-2_T2w_label-SC_seg.nii.gz"
    io.save(cord.crop((slice(None), slice(None), slice(60, 140))), good)
    assert main(["stitch", str(a), str(c), "-o", str(out), "--labels", str(small),
                 str(good)]) == 1
    assert "not on the image's grid" in capsys.readouterr().err and not out.exists()


def test_straighten_real_sagittal_scan_and_warp_back(shared_data, tmp_path):
    out = tmp_path / "straight"
    assert main(["straighten", "-i", str(shared_data / SCAN), "-s", str(shared_data / CORD),
                 "-o", str(out)]) == 0
    report = json.loads((out / "t2_straightening.json").read_text())
    assert report["max_distance_mm"] < 0.5 and report["rms_distance_mm"] < 0.25  # ½ voxel
    straight_cord = io.load(out / "t2_manual_segmentation_straight.nii.gz")
    assert straight_cord.orientation == "LAS"
    # warp the cord mask to straight space and back with msseg warp: round trip Dice
    assert main(["warp", "-i", str(shared_data / CORD), "-w", str(out /
                 "warp_curve2straight.nii.gz"), "-d", str(out / "straight_ref.nii.gz"),
                 "-o", str(tmp_path / "s.nii.gz"), "--threshold", "0.5"]) == 0
    assert dice(io.load(tmp_path / "s.nii.gz").data > 0, straight_cord.data > 0) >= 0.99
    assert main(["warp", "-i", str(tmp_path / "s.nii.gz"), "-w", str(out /
                 "warp_straight2curve.nii.gz"), "-d", str(shared_data / CORD),
                 "-o", str(tmp_path / "back.nii.gz"), "--threshold", "0.5"]) == 0
    back = io.load(tmp_path / "back.nii.gz")
    assert dice(back.data > 0, io.load(shared_data / CORD).data > 0.5) >= 0.95
    header = nib.load(shared_data / CORD).header
    for key in io.GEOMETRY_FIELDS:
        np.testing.assert_array_equal(nib.load(tmp_path / "back.nii.gz").header[key],
                                      header[key])
    warp = nib.load(out / "warp_curve2straight.nii.gz")
    assert warp.shape[3:] == (1, 3) and warp.header.get_intent()[0] == "vector"


#: (image, cord mask, slice thickness to reslice to or None) under shared/data/spine
THICK_SHORT = {
    "errsm_18_gre": ("sct_2014_testing/errsm_18/gre/gre",
                     "sct_2014_testing/errsm_18/gre/segmentation_binary", None),
    "test001_T2star": ("ivadomed_testing/sub-test001_T2star_at17d1835",
                       "ivadomed_testing/sub-test001_T2star_seg-manual_at17d1835", None),
    "errsm_24_T2w_5mm": ("sct_2014_testing/errsm_24/t2/t2",
                         "sct_2014_testing/errsm_24/t2/t2_manual_segmentation", 5),
    "test001_T2w_5mm": ("ivadomed_testing/sub-test001_T2w-sag_at38ada34",
                        "ivadomed_testing/sub-test001_seg-manual_at38ada34", 5),
}


@pytest.mark.parametrize("case", list(THICK_SHORT))
def test_straightening_thick_short_scans_along_mssegs_own_centerline(shared_data, case):
    """Axial T2*w at 7.5 mm and sagittal T2w resliced to 5 mm axial slices, each cut to 8, 10
    and 12 slices around the middle of its cord: straightened along msseg's stage-1 centerline
    (no mask given), the manual cord mask's centre lies within one in-plane voxel of the
    straight line on ≥ 85% of the complete straight slices of every cut and ≥ 95% of them
    all (deepest-voxel candidates and 3 mm smoothing gave 50–89% here)."""
    from msseg.centerline.detect import CenterlineOptions
    from msseg.data.lesion_synthesis import average_slices
    from msseg.inference.centerline import CenterlineFinder
    from msseg.preprocess import straighten as st

    image_path, cord_path, thickness = THICK_SHORT[case]
    image = io.load(shared_data / "spine" / f"{image_path}.nii.gz")
    cord = io.load(shared_data / "spine" / f"{cord_path}.nii.gz")
    if thickness:
        n = int(round(thickness / image.spacing[2 if image.orientation == "LAS" else 1]))
        image, cord = average_slices(image, n), average_slices(cord, n)
    image, cord = to_rpi(image), to_rpi(cord)
    cord = cord.with_data((cord.data >= 0.5).astype(np.uint8))
    present = np.flatnonzero(cord.data.any(axis=(0, 1)))
    finder = CenterlineFinder(options=CenterlineOptions(slice_step_mm=5.0))
    within, slices = [], 0
    for length in (8, 10, 12):
        k0 = present[0] + (len(present) - length) // 2
        box = (slice(None), slice(None), slice(k0, k0 + length))
        cut, cut_cord = image.crop(box), cord.crop(box)
        line = finder.find(cut)
        found = np.flatnonzero(line.detected)
        geometry = st.geometry_for(cut, line.world()[found[0]:found[-1] + 1])
        report = st.straightening_accuracy(st.straighten_mask(cut_cord, geometry),
                                           st.complete_slices(geometry, cut))
        assert report["slices"] >= 6 and report["within_voxel"] >= 0.85, (length, report)
        within.append(report["within_voxel"] * report["slices"])
        slices += report["slices"]
    assert sum(within) / slices >= 0.95


def test_straighten_bad_inputs(shared_data, tmp_path, capsys):
    image = io.load(shared_data / SCAN)
    holes = io.load(shared_data / CORD)
    data = holes.data.copy()
    present = np.flatnonzero(data.any(axis=(0, 2)))
    data[:, present[3]:present[-3], :] = 0
    data[:, present[len(present) // 2], :] = holes.data[:, present[len(present) // 2], :]
    io.save_like(data, holes, tmp_path / "holes.nii.gz")
    assert main(["straighten", "-i", str(shared_data / SCAN), "-s",
                 str(tmp_path / "holes.nii.gz"), "-o", str(tmp_path / "o")]) == 1
    assert "empty on" in capsys.readouterr().err and not (tmp_path / "o").exists()
    io.save(Image(image.data[:-1], image.affine), tmp_path / "other_grid.nii.gz")
    assert main(["straighten", "-i", str(tmp_path / "other_grid.nii.gz"), "-s",
                 str(shared_data / CORD), "-o", str(tmp_path / "o")]) == 1
    assert "differs" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_segment_in_straightened_space_returns_native_masks(shared_data, tmp_path):
    path = shared_data / "spine/ivadomed_testing/sub-test001_T2star_at17d1835.nii.gz"
    ref = io.load(shared_data / "spine/ivadomed_testing/"
                  "sub-test001_T2star_seg-manual_at17d1835.nii.gz").data > 0.5
    for flag, folder in (([], "plain"), (["--straighten"], "straight")):
        assert main(["segment", "lesion_ms_axial_t2", "-i", str(path), "-o",
                     str(tmp_path / folder), *flag]) == 0
    stem = "sub-test001_T2star_at17d1835"
    plain = io.load(tmp_path / "plain" / f"{stem}_label-SC_seg.nii.gz").data > 0
    straight = nib.load(tmp_path / "straight" / f"{stem}_label-SC_seg.nii.gz")
    header = nib.load(path).header
    for key in io.GEOMETRY_FIELDS:
        np.testing.assert_array_equal(straight.header[key], header[key])
    straight = np.asarray(straight.dataobj) > 0
    assert dice(straight, ref) >= 0.8 and dice(straight, plain) >= 0.8
