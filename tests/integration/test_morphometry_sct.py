"""msseg morphometry against SCT's ``sct_process_segmentation`` on real cord masks: SCT's own
test expectations (slice 10 of ``t2_seg-manual``), and every slice of four masks from three
sites in two orientations against SCT 7.4's outputs (tests/data/sct_process_segmentation)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from msseg import io
from msseg.cli.main import main
from msseg.morphometry import MEASURES, aggregate, cord_morphometry

SCT = Path(__file__).resolve().parents[1] / "data" / "sct_process_segmentation"
MASKS = {
    "t2_seg-manual": "sct_testing_data/t2/t2_seg-manual.nii.gz",
    "errsm_24_t2_manual_segmentation": "sct_2014_testing/errsm_24/t2/t2_manual_segmentation.nii.gz",
    "t2s_seg": "sct_testing_data/t2s/t2s_seg.nii.gz",
    "sub-unf01_T2w_seg-manual":
        "ivadomed_unf/derivatives/labels/sub-unf01/anat/sub-unf01_T2w_seg-manual.nii.gz",
}


def test_scts_own_expectations_on_slice_10(shared_data):
    """SCT's testing/cli/test_cli_sct_process_segmentation.py, test ..._check_values."""
    table = cord_morphometry(io.load(shared_data / "spine" / MASKS["t2_seg-manual"]))
    row = table[table.slice == 10].iloc[0]
    assert row.area == pytest.approx(78.58643257836141)
    assert row.diameter_AP == pytest.approx(7.842507960401277)
    assert row.diameter_RL == pytest.approx(12.537767663676533)
    assert row.orientation == pytest.approx(-5.435920797812814)
    assert row.eccentricity == pytest.approx(0.7678714078545043)
    assert row.solidity == pytest.approx(0.9691052891744933)


@pytest.mark.parametrize("name", MASKS)
def test_every_slice_equals_scts(shared_data, name):
    ours = cord_morphometry(io.load(shared_data / "spine" / MASKS[name])).set_index("slice")
    theirs = pd.read_csv(SCT / f"{name}.csv").set_index("slice").dropna(subset=["area"])
    assert list(ours.index) == list(theirs.index)
    for measure in MEASURES:
        np.testing.assert_allclose(ours[measure], theirs[measure], rtol=1e-6, atol=1e-9,
                                   err_msg=measure)


def test_aggregate_equals_scts_whole_cord_row(shared_data):
    """``sct_process_segmentation -i t2_seg-manual.nii.gz`` (no -perslice), SCT 7.4.dev0."""
    summary = aggregate(cord_morphometry(io.load(shared_data / "spine" /
                                                 MASKS["t2_seg-manual"])))
    assert summary["slices"] == "0:54"
    assert summary["mean_area"] == pytest.approx(77.51561788019276)
    assert summary["std_area"] == pytest.approx(3.9593528000272062)
    assert summary["mean_diameter_AP"] == pytest.approx(7.6920767516522845)
    assert summary["mean_diameter_RL"] == pytest.approx(12.582667149778976)
    assert summary["mean_orientation"] == pytest.approx(-2.6436627840064695)
    assert summary["sum_length"] == pytest.approx(55.15634187175813)


def test_command_on_a_folder_of_masks(shared_data, tmp_path):
    out = tmp_path / "csa.csv"
    folder = shared_data / "spine" / "ivadomed_unf" / "derivatives" / "labels"
    assert main(["morphometry", "-s", str(folder), "-o", str(out)]) == 0
    table = pd.read_csv(out)
    assert sorted(Path(m).name for m in table["mask"]) == [
        "sub-unf01_T1w_seg-manual.nii.gz", "sub-unf01_T2star_seg-manual.nii.gz",
        "sub-unf01_T2w_seg-manual.nii.gz"]
    t2w = table[table["mask"].str.endswith("T2w_seg-manual.nii.gz")].iloc[0]
    theirs = pd.read_csv(SCT / "sub-unf01_T2w_seg-manual.csv").dropna(subset=["area"])
    assert t2w.mean_area == pytest.approx(theirs.area.mean())
    assert t2w.sum_length == pytest.approx(theirs.length.sum())
