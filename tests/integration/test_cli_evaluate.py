"""`msseg evaluate` end to end, in-process through main(argv)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from msseg import io
from msseg.cli.main import main
from msseg.evaluation.engine import METRIC_COLUMNS, EvalOptions, evaluate_masks
from msseg.phantom import make_phantom, perturb_mask

AFFINE = np.diag([-0.5, 0.5, 3.0, 1.0])


def write(path, data, affine=AFFINE, dtype=np.uint8):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data).astype(dtype), affine), path)
    return path


def blob(shape=(20, 20, 6), boxes=((2, 6, 2, 6, 1, 3),)):
    mask = np.zeros(shape, np.uint8)
    for x0, x1, y0, y1, z0, z1 in boxes:
        mask[x0:x1, y0:y1, z0:z1] = 1
    return mask


def run(*argv):
    return main(["evaluate", *map(str, argv)])


def test_two_files_metrics_equal_library_values(tmp_path):
    p = make_phantom(3, n_lesions=6)
    pred = perturb_mask(p.lesion.data, seed=1, allowed=p.cord.data > 0)
    ref_path = io.save_like(p.lesion.data, p.image, tmp_path / "sub-1_lesion-manual.nii.gz")
    pred_path = io.save_like(pred, p.image, tmp_path / "sub-1_label-lesion_seg.nii.gz")
    out = tmp_path / "out" / "metrics.csv"
    assert run("-p", pred_path, "-r", ref_path, "-o", out, "--per-lesion",
               tmp_path / "out" / "lesions.csv", "--summary", tmp_path / "out" / "summary.csv") == 0
    table = pd.read_csv(out)
    assert list(table.columns) == ["case", *METRIC_COLUMNS]
    assert table.case.tolist() == ["sub-1"]
    expected, rows = evaluate_masks(pred > 0, p.lesion.data > 0, p.image.spacing, EvalOptions())
    for key, value in expected.items():
        assert table.loc[0, key] == pytest.approx(value, nan_ok=True), key
    lesions = pd.read_csv(tmp_path / "out" / "lesions.csv")
    assert len(lesions) == len(rows) == expected["n_ref_lesions"] + expected["n_pred_lesions"]
    summary = pd.read_csv(tmp_path / "out" / "summary.csv").set_index("metric")
    assert summary.loc["dice", "mean"] == pytest.approx(expected["dice"])


def test_folders_matched_by_case_id_and_volume_wise_specificity(tmp_path):
    write(tmp_path / "ref/a_lesion-manual.nii.gz", blob())
    write(tmp_path / "pred/a_label-lesion_seg.nii.gz", blob())
    empty = np.zeros((20, 20, 6))
    write(tmp_path / "ref/b_lesion-manual.nii.gz", empty)      # lesion-free, clean prediction
    write(tmp_path / "pred/b_label-lesion_seg.nii.gz", empty)
    write(tmp_path / "ref/c_lesion-manual.nii.gz", empty)      # lesion-free, false positive
    write(tmp_path / "pred/c_label-lesion_seg.nii.gz", blob())
    assert run("-p", tmp_path / "pred", "-r", tmp_path / "ref", "-o", tmp_path / "m.csv",
               "--summary", tmp_path / "s.csv") == 0
    table = pd.read_csv(tmp_path / "m.csv").set_index("case")
    assert table.index.tolist() == ["a", "b", "c"]
    assert table.loc["a", "dice"] == 1.0 and table.loc["b", "dice"] == 1.0
    assert table.loc["c", "lesion_ppv"] == 0.0 and table.loc["c", "lesion_sensitivity"] == 1.0
    summary = pd.read_csv(tmp_path / "s.csv").set_index("metric")
    assert summary.loc["volume_wise_specificity", "mean"] == 0.5
    assert summary.loc["volume_wise_specificity", "n"] == 2


def test_label_map_with_label_option(tmp_path):
    labels = blob()
    labels[3:5, 3:5, 1] = 2  # lesion (2) inside cord (1)
    write(tmp_path / "ref.nii.gz", labels)
    write(tmp_path / "pred.nii.gz", labels)
    assert run("-p", tmp_path / "pred.nii.gz", "-r", tmp_path / "ref.nii.gz") == 1  # not binary
    assert run("-p", tmp_path / "pred.nii.gz", "-r", tmp_path / "ref.nii.gz", "--label", "2",
               "-o", tmp_path / "m.csv") == 0
    table = pd.read_csv(tmp_path / "m.csv")
    assert table.loc[0, "ref_volume_mm3"] == pytest.approx(4 * 0.5 * 0.5 * 3.0)


def test_stack_by_patient_counts_lesions_once_per_patient(tmp_path):
    for d in ("ref", "pred"):
        write(tmp_path / d / "sub-01_chunk-1_T2w.nii.gz", blob())
        write(tmp_path / d / "sub-02_T2w.nii.gz", blob())
    write(tmp_path / "ref/sub-01_chunk-2_T2w.nii.gz", blob(boxes=((10, 14, 10, 14, 2, 4),)))
    write(tmp_path / "pred/sub-01_chunk-2_T2w.nii.gz", np.zeros((20, 20, 6)))  # missed
    assert run("-p", tmp_path / "pred", "-r", tmp_path / "ref", "-o", tmp_path / "m.csv",
               "--per-lesion", tmp_path / "l.csv", "--summary", tmp_path / "s.csv",
               "--stack-by-patient") == 0
    table = pd.read_csv(tmp_path / "m.csv").set_index("case")
    assert table.index.tolist() == ["sub-01_T2w", "sub-02_T2w"]
    assert table.loc["sub-01_T2w", "n_chunks"] == 2
    assert table.loc["sub-01_T2w", "n_ref_lesions"] == 2
    assert table.loc["sub-01_T2w", "lesion_sensitivity"] == 0.5
    assert table.loc["sub-01_T2w", "lesion_ppv"] == 1.0
    summary = pd.read_csv(tmp_path / "s.csv").set_index("metric")
    assert summary.loc["detection_rate_chunk-1", "mean"] == 1.0
    assert summary.loc["detection_rate_chunk-2", "mean"] == 0.0


def outputs(tmp_path):
    return [tmp_path / "o" / "m.csv", tmp_path / "o" / "l.csv", tmp_path / "o" / "s.csv"]


def run_expect_error(tmp_path, capsys, pred, ref, *extra, message):
    m, le, s = outputs(tmp_path)
    code = run("-p", pred, "-r", ref, "-o", m, "--per-lesion", le, "--summary", s, *extra)
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert len(err.splitlines()) == 1, err
    assert err.startswith("msseg evaluate: error:") and message in err, err
    assert not any(p.exists() for p in outputs(tmp_path)), "partial outputs written"
    return err


def test_bad_inputs_one_line_error_no_outputs(tmp_path, capsys):
    ref = write(tmp_path / "ref.nii.gz", blob())
    small = write(tmp_path / "small.nii.gz", blob(shape=(10, 20, 6)))
    err = run_expect_error(tmp_path, capsys, small, ref, message="shape (10, 20, 6)")
    assert "small.nii.gz" in err and "ref.nii.gz" in err and "(20, 20, 6)" in err
    shifted = AFFINE.copy()
    shifted[0, 3] = 5
    moved = write(tmp_path / "moved.nii.gz", blob(), affine=shifted)
    run_expect_error(tmp_path, capsys, moved, ref, message="affine")
    nan = blob().astype(np.float32)
    nan[0, 0, 0] = np.nan
    nan_path = write(tmp_path / "nan.nii.gz", nan, dtype=np.float32)
    run_expect_error(tmp_path, capsys, nan_path, ref, message="NaN")
    four = write(tmp_path / "4d.nii.gz", np.zeros((20, 20, 6, 2)))
    run_expect_error(tmp_path, capsys, four, ref, message="3D")
    (tmp_path / "junk.nii.gz").write_bytes(b"junk")
    run_expect_error(tmp_path, capsys, tmp_path / "junk.nii.gz", ref,
                     message="not a valid NIfTI header")
    run_expect_error(tmp_path, capsys, tmp_path / "absent.nii.gz", ref, message="no such file")
    soft = write(tmp_path / "soft.nii.gz", blob() * 0.7, dtype=np.float32)
    run_expect_error(tmp_path, capsys, soft, ref, message="not binary")
    run_expect_error(tmp_path, capsys, ref, ref, "--overlap", "0", message="--overlap")
    run_expect_error(tmp_path, capsys, ref, ref, "--size-bins-mm3", "50,10", message="increasing")


def test_folder_errors(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    write(tmp_path / "ref/a_seg.nii.gz", blob())
    write(tmp_path / "ref/b_seg.nii.gz", blob())
    write(tmp_path / "pred/a.nii.gz", blob())
    write(tmp_path / "pred/z.nii.gz", blob())
    run_expect_error(tmp_path, capsys, tmp_path / "empty", tmp_path / "ref", message="no NIfTI")
    err = run_expect_error(tmp_path, capsys, tmp_path / "pred", tmp_path / "ref",
                           message="unmatched")
    assert "no prediction for b" in err and "no reference for z" in err


def test_existing_outputs_are_not_overwritten(tmp_path, capsys):
    ref = write(tmp_path / "ref.nii.gz", blob())
    out = tmp_path / "m.csv"
    out.write_text("keep me")
    assert run("-p", ref, "-r", ref, "-o", out) == 1
    assert "exists" in capsys.readouterr().err
    assert out.read_text() == "keep me"
    assert run("-p", ref, "-r", ref, "-o", out, "--overwrite") == 0
    assert pd.read_csv(out).loc[0, "dice"] == 1.0


def test_float_zero_one_prediction_is_binary(tmp_path):
    ref = write(tmp_path / "ref.nii.gz", blob())
    pred = write(tmp_path / "pred.nii.gz", blob(), dtype=np.float32)
    assert run("-p", pred, "-r", ref, "-o", tmp_path / "m.csv") == 0
    assert pd.read_csv(tmp_path / "m.csv").loc[0, "dice"] == 1.0


def _grouped_cases(tmp_path):
    """Four cases of two sites and two contrasts with hand-computable Dice: a 4x4x2 block of
    32 voxels against a prediction that keeps 32, 24, 16 or 0 of them."""
    ref = blob(boxes=((2, 6, 2, 6, 1, 3),))
    keep = {"sub-aaa01_T2w": 4, "sub-aaa02_PSIR": 3, "sub-bbb01_T2w": 2, "sub-bbb02_PSIR": 0}
    for case, rows in keep.items():
        pred = np.zeros_like(ref)
        pred[2:2 + rows, 2:6, 1:3] = 1
        write(tmp_path / f"ref/{case}_lesion-manual.nii.gz", ref)
        write(tmp_path / f"pred/{case}_label-lesion_seg.nii.gz", pred)
    # Dice = 2|P∩R| / (|P| + |R|): 1, 48/56, 32/48, 0
    return {"sub-aaa01_T2w": 1.0, "sub-aaa02_PSIR": 48 / 56, "sub-bbb01_T2w": 32 / 48,
            "sub-bbb02_PSIR": 0.0}


@pytest.mark.parametrize("by,expected", [
    ("site", {"aaa": [1.0, 48 / 56], "bbb": [32 / 48, 0.0]}),
    ("contrast", {"T2w": [1.0, 32 / 48], "PSIR": [48 / 56, 0.0]}),
])
def test_group_by_bids_entities_gives_hand_computed_summaries(tmp_path, capsys, by, expected):
    _grouped_cases(tmp_path)
    summary_path = tmp_path / "summary.csv"
    assert run("-p", tmp_path / "pred", "-r", tmp_path / "ref", "--summary", summary_path,
               "--group-by", by) == 0
    summary = pd.read_csv(summary_path)
    assert list(summary.columns[:3]) == ["group_by", "group", "metric"]
    assert set(summary.group) == {"all", *expected}
    dice = summary[summary.metric == "dice"].set_index("group")
    assert dice.loc["all", "mean"] == pytest.approx(np.mean([1.0, 48 / 56, 32 / 48, 0.0]))
    for group, values in expected.items():
        assert dice.loc[group, "n"] == 2
        assert dice.loc[group, "mean"] == pytest.approx(np.mean(values))
        assert dice.loc[group, "std"] == pytest.approx(np.std(values, ddof=1))
    screen = capsys.readouterr().out
    assert f"by {by}" in screen and all(group in screen for group in expected)


def test_group_by_a_column_of_a_groups_table(tmp_path):
    _grouped_cases(tmp_path)
    table = tmp_path / "groups.csv"
    table.write_text("case,scanner\nsub-aaa01_T2w,x\nsub-aaa02_PSIR,y\nsub-bbb01_T2w,y\n"
                     "sub-bbb02_PSIR,y\n")
    out = tmp_path / "summary.csv"
    assert run("-p", tmp_path / "pred", "-r", tmp_path / "ref", "--summary", out,
               "--group-by", "scanner", "--groups", table) == 0
    dice = pd.read_csv(out).query("metric == 'dice'").set_index("group")
    assert dice.loc["x", "mean"] == pytest.approx(1.0) and dice.loc["x", "n"] == 1
    assert dice.loc["y", "mean"] == pytest.approx((48 / 56 + 32 / 48 + 0.0) / 3)


@pytest.mark.parametrize("extra,message", [
    (["--group-by", "scanner"], "one of contrast, site, chunk"),
    (["--groups", "GROUPS"], "--groups needs --group-by"),
    (["--group-by", "site", "--groups", "GROUPS"], "no site for sub-bbb02_PSIR"),
    (["--group-by", "chunk", "--stack-by-patient"], "cannot be combined"),
    (["--group-by", "site", "--groups", "SUMMARY"], "would overwrite the input"),
])
def test_group_by_refuses_bad_requests_and_writes_nothing(tmp_path, capsys, extra, message):
    _grouped_cases(tmp_path)
    table = tmp_path / "groups.csv"
    table.write_text("case,site\nsub-aaa01_T2w,a\nsub-aaa02_PSIR,a\nsub-bbb01_T2w,b\n")
    out = tmp_path / "summary.csv"
    if "SUMMARY" in extra:   # the groups table given as the summary output too
        table = out
        table.write_text("case,site\nsub-aaa01_T2w,a\n")
    argv = [str(table) if a in ("GROUPS", "SUMMARY") else a for a in extra]
    assert run("-p", tmp_path / "pred", "-r", tmp_path / "ref", "--summary", out, *argv) == 1
    assert message in capsys.readouterr().err
    if "SUMMARY" in extra:
        assert out.read_text() == "case,site\nsub-aaa01_T2w,a\n"   # the input untouched
    else:
        assert not out.exists()
