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


def test_per_level_equals_scts(shared_data):
    """``sct_process_segmentation -vertfile t2_seg-manual_labeled -vert 2:5 -perlevel 1``:
    every level's slices, means, standard deviations and length; and the per-slice levels."""
    from msseg.morphometry import per_level, with_levels

    folder = shared_data / "spine" / "sct_testing_data" / "t2"
    mask = io.load(folder / "t2_seg-manual.nii.gz")
    table = with_levels(cord_morphometry(mask), mask,
                        io.load(folder / "t2_seg-manual_labeled.nii.gz"))
    assert table.vert_level.tolist() == [0] + [5] * 3 + [4] * 14 + [3] * 18 + [2] * 17 + [0] * 2
    ours = per_level(table, only=[2, 3, 4, 5]).set_index("vert_level")
    theirs = pd.read_csv(SCT / "t2_seg-manual_perlevel.csv").set_index("vert_level")
    assert sorted(ours.index) == sorted(theirs.index) == [2, 3, 4, 5]
    assert ours.level.to_dict() == {2: "C2", 3: "C3", 4: "C4", 5: "C5"}
    for column in theirs.columns:
        if column == "slices":
            assert ours.slices.to_dict() == theirs.slices.to_dict()
        else:
            np.testing.assert_allclose(ours.loc[theirs.index, column], theirs[column],
                                       rtol=1e-6, err_msg=column)


def test_command_per_level_with_lesions_plot_and_stats(shared_data, tmp_path, capsys):
    """The cohort path: per-level rows (case = scan:level) equal to SCT's, a CSA plot, the
    lesion table beside them with SCT's measures and the lesion outside the cord counted,
    and ``msseg stats`` reading two such tables."""
    folder = shared_data / "spine" / "sct_testing_data" / "t2"
    cord = io.load(folder / "t2_seg-manual.nii.gz")
    lesion = np.zeros(cord.shape, np.uint8)
    lesion[29:32, 45:55, 25:27] = 1                     # SCT's `straight` dummy lesion
    lesion[2:4, 10:12, 2:4] = 1                         # far from the cord
    lesion_path = io.save(cord.with_data(lesion), tmp_path / "t2_lesion.nii.gz")
    out, plot = tmp_path / "csa.csv", tmp_path / "csa.png"
    argv = ["morphometry", "-s", str(folder / "t2_seg-manual.nii.gz"), "--per-level",
            "--levels", str(folder / "t2_seg-manual_labeled.nii.gz"), "--vert", "2:4"]
    assert main([*argv, "-o", str(out), "--plot", str(plot),
                 "--lesion", str(lesion_path)]) == 0
    table = pd.read_csv(out)
    assert table.case.tolist() == ["t2_seg-manual:C2", "t2_seg-manual:C3", "t2_seg-manual:C4"]
    theirs = pd.read_csv(SCT / "t2_seg-manual_perlevel.csv").set_index("vert_level")
    np.testing.assert_allclose(table.mean_area, theirs.loc[[2, 3, 4], "mean_area"], rtol=1e-6)
    assert plot.stat().st_size > 10_000
    lesions = pd.read_csv(tmp_path / "csa_lesions.csv")
    assert len(lesions) == 2 and set(lesions.scan) == {"t2_seg-manual"}
    inside = lesions[lesions.volume_in_cord_mm3 > 0].iloc[0]
    sct = pd.read_csv(SCT.parent / "sct_analyze_lesion" / "sct_analyze_lesion.csv")
    straight = sct[sct.case == "straight"].iloc[0]
    assert inside.total_bridge_mm == pytest.approx(straight.total_bridge_mm, rel=1e-6)
    assert lesions.length_mm.isna().sum() == 1
    assert "1 outside the cord" in capsys.readouterr().out
    # msseg stats reads two such tables, paired by case
    plain = tmp_path / "csa_no_angle.csv"
    assert main([*argv, "-o", str(plain), "--no-angle-correction"]) == 0
    assert main(["stats", str(out), str(plain), "--metric", "mean_area", "--paired"]) == 0


@pytest.mark.parametrize("problem", ["soft lesion", "level map grid", "no levels", "bad vert"])
def test_command_refuses_bad_input_and_writes_nothing(shared_data, tmp_path, capsys, problem):
    folder = shared_data / "spine" / "sct_testing_data" / "t2"
    cord_path = folder / "t2_seg-manual.nii.gz"
    cord = io.load(cord_path)
    out = tmp_path / "csa.csv"
    argv = ["morphometry", "-s", str(cord_path), "-o", str(out)]
    if problem == "soft lesion":
        soft = io.save(cord.with_data(cord.data * 0.7), tmp_path / "soft.nii.gz")
        argv += ["--lesion", str(soft)]
        message = "must be binary"
    elif problem == "level map grid":
        cut = io.load(folder / "t2_seg-manual_labeled.nii.gz").crop((slice(0, 50),) * 3)
        argv += ["--per-level", "--levels", str(io.save(cut, tmp_path / "lv.nii.gz"))]
        message = "not on the image's grid"
    elif problem == "no levels":
        argv += ["--per-level"]
        message = "need a level map"
    else:
        argv += ["--levels", str(folder / "t2_seg-manual_labeled.nii.gz"), "--vert", "5:2"]
        message = "first ≤ last"
    assert main(argv) == 1
    assert message in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "csa_lesions.csv").exists()


@pytest.mark.parametrize("subject, scts", [
    (["sex", "0", "brain-volume", "960606.0", "thalamus-volume", "13942.0"], 80.7253521452222),
    (["sex", "1", "brain-volume", "1200000"], 76.63401792502341)])
def test_normalised_csa_equals_scts(shared_data, tmp_path, subject, scts):
    """``sct_process_segmentation -i t2_seg-manual.nii.gz -normalize …`` (SCT 7.4.dev0):
    its MEAN(area) with each of its two models."""
    out = tmp_path / "csa.csv"
    mask = shared_data / "spine" / MASKS["t2_seg-manual"]
    assert main(["morphometry", "-s", str(mask), "-o", str(out), "--normalize", *subject]) == 0
    row = pd.read_csv(out).iloc[0]
    assert row.mean_area_normalized == pytest.approx(scts, rel=1e-9)
    assert row.mean_area == pytest.approx(77.51561788019276)      # kept as measured


def test_normalised_csa_by_hand_and_bad_subjects():
    from msseg.errors import MssegError
    from msseg.morphometry import normalised_csa

    # 70 + 2.374e-5·(1156171.07 − 1e6) − 15.0075·(0.43657 − 1) + 1.2389e-5·(530335.04 − 1e6)
    expected = (70 + 2.3741962085478625e-05 * (1156171.0708955224 - 1e6)
                - 15.00753582193219 * (0.43656716417910446 - 1)
                + 1.2389409865349374e-05 * (530335.0410447761 - 1e6))
    assert normalised_csa(70.0, {"sex": 1, "brain-volume": 1e6}) == pytest.approx(expected)
    with pytest.raises(MssegError, match="female 0, male 1"):
        normalised_csa(70.0, {"sex": 2, "brain-volume": 1e6})
    with pytest.raises(MssegError, match="takes sex and brain-volume"):
        normalised_csa(70.0, {"sex": 1})


def test_pmj_distances_equal_scts(shared_data, tmp_path):
    """``sct_process_segmentation -pmj`` on t2_seg-manual with a PMJ label off its centre
    (tests/data/sct_process_segmentation/README.md): every slice's DistancePMJ (SCT rounds to
    0.01 mm), and the 10 mm measured 25 mm below the PMJ."""
    folder = shared_data / "spine" / "sct_testing_data" / "t2"
    cord = io.load(folder / "t2_seg-manual.nii.gz")
    label = np.zeros(cord.shape, np.uint8)
    label[30, 54, 24] = 1
    pmj = io.save(cord.with_data(label), tmp_path / "t2_pmj.nii.gz")
    out = tmp_path / "pmj.csv"
    argv = ["morphometry", "-s", str(folder / "t2_seg-manual.nii.gz"), "--pmj", str(pmj)]
    assert main([*argv, "-o", str(out), "--per-slice"]) == 0
    ours = pd.read_csv(out).set_index("slice").distance_pmj_mm
    theirs = pd.read_csv(SCT / "t2_seg-manual_pmj.csv").set_index("slice").distance_pmj
    np.testing.assert_allclose(ours.loc[theirs.index].round(2), theirs, atol=1e-9)
    assert main([*argv, "-o", str(tmp_path / "at25.csv"), "--pmj-distance", "25",
                 "--pmj-extent", "10"]) == 0
    row = pd.read_csv(tmp_path / "at25.csv").iloc[0]
    assert (row.slices, row.distance_pmj_mm) == ("24:33", 25.0)
    assert row.mean_area == pytest.approx(82.25560209672662, rel=1e-9)
    assert row.sum_length == pytest.approx(10.005385501469565, rel=1e-9)


def test_discs_and_dense_levels_give_the_same_levels(shared_data, tmp_path, capsys):
    """PAM50's cord, its disc labels and its dense level map, cut to C2–C5 on one grid:
    --discs and --levels name the same levels, and their CSA per level agrees (the two rules
    can differ only on the slices at a disc); a dense map given as --discs is refused."""
    folder = shared_data / "spine" / "PAM50"
    box = (slice(40, 100), slice(40, 100), slice(795, 945))
    paths = {}
    for name in ("PAM50_cord", "PAM50_label_disc", "PAM50_levels"):
        paths[name] = io.save(io.load(folder / f"{name}.nii.gz").crop(box),
                              tmp_path / f"{name}.nii.gz")
    tables = {}
    for flag, source in (("--discs", "PAM50_label_disc"), ("--levels", "PAM50_levels")):
        out = tmp_path / f"{flag[2:]}.csv"
        assert main(["morphometry", "-s", str(paths["PAM50_cord"]), flag, str(paths[source]),
                     "--per-level", "-o", str(out)]) == 0
        tables[flag] = pd.read_csv(out).set_index("level")
    assert list(tables["--discs"].index) == list(tables["--levels"].index)
    assert {"C3", "C4"} <= set(tables["--discs"].index)
    np.testing.assert_allclose(tables["--discs"].mean_area, tables["--levels"].mean_area,
                               rtol=0.01)
    assert main(["morphometry", "-s", str(paths["PAM50_cord"]), "--discs",
                 str(paths["PAM50_levels"]), "-o", str(tmp_path / "x.csv")]) == 1
    assert "not disc labels" in capsys.readouterr().err
