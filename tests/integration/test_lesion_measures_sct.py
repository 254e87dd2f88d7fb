"""msseg's lesion table against SCT's ``sct_analyze_lesion`` on the dummy lesions of SCT's own
tests (rebuilt here from their published first voxel and size) and on SCT's fake lesion: every
measure equal to SCT 7.4's output (tests/data/sct_analyze_lesion) and to the expectations SCT's
test derives from the dimensions."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from msseg import io
from msseg.lesion_measures import COLUMNS
from msseg.lesion_table import lesion_table

SCT = pd.read_csv(Path(__file__).resolve().parents[1] / "data" / "sct_analyze_lesion"
                  / "sct_analyze_lesion.csv")
SCT_LEVELS = (Path(__file__).resolve().parents[1] / "data" / "sct_analyze_lesion"
              / "sct_analyze_lesion_levels.csv")
T2 = "spine/sct_testing_data/t2"
CASES = {
    "straight": [((29, 45, 25), (3, 10, 2))],
    "small_3633": [((29, 27, 25), (1, 4, 1))],
    "curved": [((31, 0, 25), (4, 15, 3))],
    "two_si": [((31, 0, 25), (4, 15, 3)), ((29, 45, 25), (3, 10, 2))],
    "two_rl": [((29, 50, 29), (2, 5, 2)), ((29, 45, 23), (3, 10, 2))],
    "partly_outside": [((29, 40, 19), (3, 3, 5))],
}
# SCT's test tolerance per case (its parametrisation: straight cord 0.001, curved 0.1)
RTOL = {"straight": 1e-3, "small_3633": 1e-3, "curved": 0.1, "two_si": 0.1, "two_rl": 0.1,
        "partly_outside": 1e-3}


def dummy_lesion(shared_data: Path, lesions):
    image = io.load(shared_data / T2 / "t2.nii.gz")
    data = np.zeros(image.shape, np.uint8)
    for (x, y, z), (w, h, d) in lesions:
        data[x:x + w, y:y + h, z:z + d] = 1
    return image.with_data(data)


def by_volume(table: pd.DataFrame) -> pd.DataFrame:
    return table.sort_values("volume_in_cord_mm3", kind="stable").reset_index(drop=True)


@pytest.mark.parametrize("case", [*CASES, "fake"])
def test_every_measure_equals_scts(shared_data, case):
    if case == "fake":
        lesion = io.load(shared_data / T2 / "t2_fake_lesion_lesion_seg.nii.gz")
        cord = io.load(shared_data / T2 / "t2_fake_lesion_sc_seg.nii.gz")
    else:
        lesion = dummy_lesion(shared_data, CASES[case])
        cord = io.load(shared_data / T2 / "t2_seg-manual.nii.gz")
    ours = by_volume(lesion_table(lesion, cord=cord))
    theirs = by_volume(SCT[SCT.case == case])
    assert len(ours) == len(theirs)
    for column in COLUMNS:
        # volumes: SCT multiplies the header's float32 pixdim, msseg the affine's spacing
        np.testing.assert_allclose(ours[column].to_numpy(float),
                                   theirs[column].to_numpy(float), rtol=1e-6, atol=1e-9,
                                   err_msg=column)


@pytest.mark.parametrize("case", CASES)
def test_scts_expectations_from_the_dimensions(shared_data, case):
    """SCT's compute_expected_measurements: a box of w (AP) × h (S–I) × d (R–L) voxels of 1 mm
    has length h, width w, maximum equivalent diameter 2√(wd/π), volume w·h·d, and damage
    ratio w·d / the smallest cord area on its slices; the angle correction can only lengthen
    the length and shorten the others. A box leaving the cord is measured inside it."""
    cord = io.load(shared_data / T2 / "t2_seg-manual.nii.gz")
    table = lesion_table(dummy_lesion(shared_data, CASES[case]), cord=cord)
    for (x, y, z), (w, h, d) in CASES[case]:
        if (x, y, z) == (29, 40, 19):          # R–L slice 19 is outside the cord
            z, d = 20, 4
        row = table[(table.slice_min == y) & (table.slice_max == y + h - 1)].iloc[0]
        rtol = RTOL[case]
        assert row.volume_in_cord_mm3 == w * h * d
        min_area = min(int(cord.data[:, k, :].sum()) for k in range(y, y + h))
        assert row.max_axial_damage_ratio == w * d / min_area
        assert row.length_mm == pytest.approx(h, rel=rtol) and row.length_mm >= h
        assert row.width_mm == pytest.approx(w, rel=rtol) and row.width_mm <= w
        diameter = 2 * math.sqrt(w * d / math.pi)
        assert row.max_equivalent_diameter_mm == pytest.approx(diameter, rel=rtol)
        assert row.max_equivalent_diameter_mm <= diameter + 1e-10


@pytest.mark.parametrize("axcodes", ["PSR", "AIL"])
def test_a_crop_to_the_masks_measures_the_same(shared_data, axcodes):
    """segment measures inside the masks' bounding box (inference/finish.py): with the
    image's slice count for the centerline's smoothing, the crop gives the whole image's
    numbers (t2_seg-manual does not fill t2's slices in-plane; the crop trims S–I too)."""
    from msseg.image import union_bounding_box
    from msseg.inference.finish import _lesion_table_in
    from msseg.preprocess.orient import reorient

    cord = io.load(shared_data / T2 / "t2_seg-manual.nii.gz")
    lesion = dummy_lesion(shared_data, CASES["two_si"])
    data = cord.data.copy()
    data[:, :3] = 0                              # a cord that stops 3 slices before the edge
    cord = cord.with_data(data)
    lesion = lesion.with_data(lesion.data * (data > 0))
    cord, lesion = reorient(cord, axcodes), reorient(lesion, axcodes)
    whole = lesion_table(lesion, cord=cord)
    box = union_bounding_box([cord.data > 0, lesion.data > 0])
    assert (box[1].start, box[1].stop) == ((3, 55) if axcodes == "PSR" else (0, 52))
    cropped = _lesion_table_in(box, lesion, {"lesion": lesion, "cord": cord}, None)
    for column in COLUMNS:
        np.testing.assert_allclose(cropped[column].to_numpy(float),
                                   whole[column].to_numpy(float), rtol=1e-9, err_msg=column)


def test_level_shares_equal_scts_distribution(shared_data):
    """SCT's ``-f`` per-level distribution (a one-tract atlas of ones, the labelled cord as
    PAM50_levels): the share of each lesion's labelled voxels on each level."""
    from msseg.levels import lesion_levels, level_name

    cord = io.load(shared_data / T2 / "t2_seg-manual.nii.gz")
    lesion = dummy_lesion(shared_data, CASES["two_si"])
    lesion = lesion.with_data(lesion.data * (cord.data > 0))
    shares = lesion_levels(lesion, io.load(shared_data / T2 / "t2_seg-manual_labeled.nii.gz"))
    theirs = pd.read_csv(SCT_LEVELS)
    volumes = by_volume(lesion_table(lesion, cord=cord))
    for _, row in volumes.iterrows():
        label = 1 if row.volume_in_cord_mm3 == 180 else 2      # SCT's labels: curved first
        expected = {level_name(int(r.level)): r.percent / 100
                    for r in theirs[theirs.sct_label == label].itertuples()}
        ours = dict(part.split(":") for part in
                    shares.set_index("lesion_id").level_shares[row.lesion_id].split(";"))
        assert set(ours) == set(expected)
        for name, share in expected.items():
            assert float(ours[name]) == pytest.approx(share, abs=0.005)
