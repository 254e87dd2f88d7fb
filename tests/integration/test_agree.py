"""``msseg agree`` on the real MS patient: SCT's released axial model against msseg's own."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from msseg import io
from msseg.cli.main import main
from msseg.evaluation.agreement import lesion_agreement

pytestmark = [pytest.mark.data, pytest.mark.slow]
T2_MS = "spine/ms_patient_unlabelled/t2_ms/t2.nii.gz"
LESION_FREE = "spine/ivadomed_unf/sub-unf01/anat/sub-unf01_T2w.nii.gz"


def test_agree_runs_both_models_and_scores_their_masks(shared_data, sct_models, tmp_path,
                                                       capsys):
    out = tmp_path / "agree"
    model_a = sct_models / "t2_ax_lesion.h5"
    argv = ["agree", str(model_a), "lesion_ms_axial_t2", "-i", str(shared_data / T2_MS),
            str(shared_data / LESION_FREE), "-o", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "Agreement, not accuracy" in printed
    table = pd.read_csv(out / "agreement.csv").set_index("scan")
    # the masks each model wrote, scored again here: the command's row is theirs
    a = io.load(out / "t2_ax_lesion" / "t2_label-lesion_seg.nii.gz")
    b = io.load(out / "lesion_ms_axial_t2" / "t2_label-lesion_seg.nii.gz")
    cord = io.load(out / "lesion_ms_axial_t2" / "t2_label-SC_seg.nii.gz").data > 0
    row, lesions = lesion_agreement(a.data > 0, b.data > 0, a.voxel_volume_mm3, cord)
    for key, value in row.items():
        assert table.loc["t2", key] == pytest.approx(value), key
    assert table.loc["t2", "n_a"] == 5                  # SCT's model on t2_ms (docs table)
    assert table.loc["t2", "outside_cord_a"] == 0
    assert table.loc["sub-unf01_T2w", ["n_a", "n_b"]].tolist() == [0, 0]
    assert table.loc["sub-unf01_T2w", "dice"] == 1.0
    per_lesion = pd.read_csv(out / "agreement_lesions.csv")
    assert len(per_lesion) == row["n_a"] + row["n_b"]
    assert np.allclose(per_lesion[per_lesion.scan == "t2"].volume_mm3.sum(),
                       row["volume_a_mm3"] + row["volume_b_mm3"])
    summary = pd.read_csv(out / "agreement_summary.csv").iloc[0]
    assert (summary.model_a, summary.model_b, summary.scans) == ("t2_ax_lesion",
                                                                 "lesion_ms_axial_t2", 2)
    assert summary.share_a_found == pytest.approx(row["found_a"] / row["n_a"])
    assert (out / "agreement.png").stat().st_size > 10_000
    # a second run is refused without --overwrite (one line, nothing changed), then reuses
    # both models' masks with it
    stamp = (out / "agreement.csv").stat().st_mtime_ns
    assert main(argv) == 1
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert (out / "agreement.csv").stat().st_mtime_ns == stamp
    assert main([*argv, "--overwrite"]) == 0
    again = pd.read_csv(out / "agreement.csv").set_index("scan")
    pd.testing.assert_frame_equal(again, table)


def test_agree_refuses_bad_arguments_before_any_work(shared_data, tmp_path, capsys):
    out = tmp_path / "agree"
    image = str(shared_data / LESION_FREE)
    for argv, message in (
            (["lesion_ms_axial_t2", "lesion_ms_axial_t2"], "same model"),
            (["lesion_ms_axial_t2", "lesion_ms", "--overlap", "2"], "--overlap 2"),
            (["lesion_ms_axial_t2", "no_such_model"], "unknown task"),
            (["lesion_ms_axial_t2", "lesion_ms", "--centerline", image], "neither model")):
        assert main(["agree", *argv[:2], "-i", image, "-o", str(out), *argv[2:]]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("msseg agree: error:") and message in err[0]
        assert not out.exists()
