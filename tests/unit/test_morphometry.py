"""Cord morphometry (msseg.morphometry) on masks whose answers are known by hand: a straight
elliptic cylinder drawn at 0.25 mm (area π·a·b, diameters 2a and 2b, no tilt), the same
cylinder tilted in the x–z and y–z planes (axial cuts longer by 1/cos: angle correction
brings the area back and finds the tilt), a soft mask (partial volume counts), the empty
rule, and the command's refusals."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from msseg import io
from msseg.cli.main import main
from msseg.errors import MssegError
from msseg.image import Image
from msseg.morphometry import aggregate, centerline_slopes, cord_morphometry

SPACING = (0.25, 0.25, 1.0)


def _cylinder(a_mm=5.0, b_mm=3.5, slope=(0.0, 0.0), nz=40, shape=(160, 160)) -> Image:
    """A cylinder whose cross-section (across its axis) is an ellipse of semi-axes a (x) and
    b (y) mm, its axis through the grid centre with dx/dz, dy/dz = ``slope`` (mm per mm);
    RPI voxels (nibabel LAS: x from right to left, y from posterior to anterior)."""
    sx, sy = slope
    norm = math.sqrt(1 + sx * sx + sy * sy)
    axis = np.array([sx, sy, 1.0]) / norm
    x, y, z = np.meshgrid(*(np.arange(n) * s for n, s in zip((*shape, nz), SPACING,
                                                               strict=True)), indexing="ij")
    centre = np.array([shape[0] * SPACING[0] / 2, shape[1] * SPACING[1] / 2, nz / 2])
    d = np.stack([x - centre[0], y - centre[1], z - centre[2]], axis=-1)
    d -= (d @ axis)[..., None] * axis          # the part across the axis
    ex = np.array([1.0, 0.0, -sx]) / math.sqrt(1 + sx * sx)   # across-axis frame: x-ish,
    ey = np.cross(axis, ex)                                   # then y-ish
    inside = ((d @ ex) / a_mm) ** 2 + ((d @ ey) / b_mm) ** 2 <= 1
    affine = np.diag([-SPACING[0], SPACING[1], SPACING[2], 1.0])
    return Image(inside.astype(np.uint8), affine)


def _middle(table: pd.DataFrame) -> pd.DataFrame:
    return table[(table.slice >= 10) & (table.slice < 30)]


def test_straight_cylinder_has_its_drawn_area_and_diameters():
    table = _middle(cord_morphometry(_cylinder()))
    assert len(table) == 20
    assert table.area.mean() == pytest.approx(math.pi * 5 * 3.5, rel=0.02)
    assert table.diameter_RL.mean() == pytest.approx(10.0, rel=0.03)
    # the AP profile is averaged over 3 mm of RL around the centre: the mean chord of the
    # ellipse there, 2b · mean(sqrt(1 − u²/a²)) over |u| ≤ 1.5 mm
    u = np.linspace(-1.5, 1.5, 10001)
    assert table.diameter_AP.mean() == pytest.approx(7.0 * np.sqrt(1 - u ** 2 / 25).mean(),
                                                     rel=0.02)
    assert table.diameter_AP_ellipse.mean() == pytest.approx(7.0, rel=0.03)
    assert table.eccentricity.mean() == pytest.approx(math.sqrt(1 - 3.5 ** 2 / 5 ** 2), abs=0.02)
    assert np.allclose(table[["angle_AP", "angle_RL"]], 0, atol=1e-6)
    assert np.allclose(table.length, 1.0)
    np.testing.assert_allclose(table.length_anterior + table.length_posterior, table.diameter_AP)


@pytest.mark.parametrize("slope,angle_ap,angle_rl", [((0.5, 0.0), 26.565, 0.0),
                                                     ((0.0, 0.4), 0.0, 21.801)])
def test_angle_correction_finds_the_tilt_and_the_cross_section(slope, angle_ap, angle_rl):
    cylinder = _cylinder(slope=slope)
    tilt = math.sqrt(1 + slope[0] ** 2) * math.sqrt(1 + slope[1] ** 2)   # 1 / (cos · cos)
    corrected = _middle(cord_morphometry(cylinder))
    raw = _middle(cord_morphometry(cylinder, angle_correction=False))
    assert corrected.angle_AP.mean() == pytest.approx(angle_ap, abs=0.3)
    assert corrected.angle_RL.mean() == pytest.approx(angle_rl, abs=0.3)
    assert corrected.area.mean() == pytest.approx(math.pi * 5 * 3.5, rel=0.03)
    assert raw.area.mean() == pytest.approx(math.pi * 5 * 3.5 * tilt, rel=0.03)
    assert corrected.length.mean() == pytest.approx(tilt, rel=0.01)


def test_spline_slope_of_a_straight_tilted_line_is_its_slope():
    mask = np.zeros((40, 40, 20), bool)
    for k in range(20):
        mask[10 + k // 2, 20, k] = True                       # x = 10 + z / 2 (integer part)
    slopes = centerline_slopes(mask, 1.0)
    assert sorted(slopes) == list(range(20))
    assert np.mean([s[0] for s in slopes.values()]) == pytest.approx(0.5, abs=0.02)
    assert all(abs(s[1]) < 1e-9 for s in slopes.values())


def test_soft_mask_area_counts_partial_volume():
    hard = _cylinder()
    soft = hard.with_data(hard.data * 0.5)
    half = _middle(cord_morphometry(soft, angle_correction=False))
    # each slice is normalised to [0, 1] first (as SCT does): a uniformly soft mask is the mask
    full = _middle(cord_morphometry(hard, angle_correction=False))
    np.testing.assert_allclose(half.area, full.area)
    rim = hard.data.astype(np.float32)
    rim[hard.data.astype(bool) & ~np.roll(hard.data.astype(bool), 1, 0)] = 0.5
    softer = _middle(cord_morphometry(hard.with_data(rim), angle_correction=False))
    assert (softer.area < full.area).all()


def test_empty_mask_gives_no_rows_and_aggregates_to_nan():
    table = cord_morphometry(Image(np.zeros((10, 10, 5), np.uint8), np.eye(4)))
    assert table.empty and list(table.columns[:2]) == ["slice", "area"]
    summary = aggregate(table)
    assert math.isnan(summary["mean_area"]) and summary["sum_length"] == 0.0


def test_aggregate_is_mean_std_and_summed_length():
    table = pd.DataFrame({"slice": [3, 4, 5], "length": [1.0, 1.0, 2.0],
                          **{m: [1.0, 2.0, np.nan] for m in ("area", "angle_AP", "angle_RL",
                             "diameter_AP", "diameter_AP_ellipse", "diameter_RL",
                             "length_anterior", "length_posterior", "eccentricity",
                             "orientation", "solidity")}})
    summary = aggregate(table)
    assert summary["slices"] == "3:5" and summary["sum_length"] == 4.0
    assert summary["mean_area"] == 1.5 and summary["std_area"] == 0.5


def test_command_writes_per_slice_rows_and_refuses_a_label_map(tmp_path, capsys):
    mask = io.save(_cylinder(nz=12), tmp_path / "sub-01_T2w_seg-manual.nii.gz")
    out = tmp_path / "csa.csv"
    assert main(["morphometry", "-s", str(tmp_path), "-o", str(out), "--per-slice"]) == 0
    table = pd.read_csv(out)
    assert len(table) == 12 and set(table["mask"]) == {str(mask)}
    labels = io.save(Image(np.full((5, 5, 5), 3, np.uint8), np.eye(4)), tmp_path / "lv.nii.gz")
    out2 = tmp_path / "levels.csv"
    assert main(["morphometry", "-s", str(labels), "-o", str(out2)]) == 1
    assert not out2.exists()
    assert "values outside 0–1" in capsys.readouterr().err
    assert main(["morphometry", "-s", str(tmp_path / "none.nii.gz"), "-o", str(out2)]) == 1


def test_pmj_distance_and_slices_are_scts_own_test_values():
    """SCT's test_cli_sct_process_segmentation.py: a 15-voxel cube in a 32³ grid (1 mm), the
    PMJ at (15, 15, 28): slice 10 lies 18.11 mm below it, and -pmj-distance 8 -pmj-extent 4
    measures slices 18:21 (4 slices, SUM(length) 4.0)."""
    from msseg.morphometry import pmj_distances, pmj_slices

    data = np.zeros((32, 32, 32), np.uint8)
    data[9:24, 9:24, 9:24] = 1
    pmj = np.zeros_like(data)
    pmj[15, 15, 28] = 1
    distances = pmj_distances(Image(data, np.eye(4)), Image(pmj, np.eye(4)))
    assert round(distances[10], 2) == 18.11
    assert distances[28] == 0.0 and distances[9] > distances[10]
    assert pmj_slices(distances, 8.0, 4.0) == [18, 19, 20, 21]
    table = cord_morphometry(Image(data, np.eye(4)))
    assert aggregate(table[table.slice.isin([18, 19, 20, 21])])["sum_length"] == 4.0
    with pytest.raises(MssegError, match="outside the cord's"):
        pmj_slices(distances, 40.0, 4.0)
