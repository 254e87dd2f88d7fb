"""`msseg --help`, `msseg stats` and `msseg demo`, in-process; the console script once."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from msseg.cli.main import main


@pytest.mark.parametrize("argv", [["--help"], ["evaluate", "--help"], ["stats", "--help"],
                                  ["demo", "--help"], ["dataset", "--help"],
                                  ["dataset", "scan", "--help"], ["train", "--help"]])
def test_help(argv, capsys):
    assert main(argv) == 0
    assert "usage: msseg" in capsys.readouterr().out


def test_unknown_command_is_a_usage_error(capsys):
    assert main(["nope"]) == 2


def test_console_script_installed():
    exe = shutil.which("msseg") or str(Path(sys.executable).with_name("msseg"))
    result = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and result.stdout.startswith("msseg ")


def test_stats_cli(tmp_path):
    cases = [f"c{i}" for i in range(10)]
    pd.DataFrame({"case": cases, "dice": [0.60 + 0.02 * i for i in range(10)]}).to_csv(
        tmp_path / "model_a.csv", index=False)
    pd.DataFrame({"case": cases, "dice": [0.65 + 0.021 * i for i in range(10)]}).to_csv(
        tmp_path / "model_b.csv", index=False)
    code = main(["stats", str(tmp_path / "model_a.csv"), str(tmp_path / "model_b.csv"),
                 "--metric", "dice", "--paired", "-o", str(tmp_path / "t.csv"),
                 "--plot", str(tmp_path / "p.png")])
    assert code == 0
    table = pd.read_csv(tmp_path / "t.csv")
    wil = table[table.test == "wilcoxon_signed_rank"].iloc[0]
    assert (wil.group_a, wil.group_b, wil.n) == ("model_a", "model_b", 10)
    assert wil.p_value == pytest.approx(0.001953125)  # all 10 differences positive: 2 / 2^10
    assert (tmp_path / "p.png").stat().st_size > 5000


def test_stats_cli_errors(tmp_path, capsys):
    pd.DataFrame({"dice": [0.5]}).to_csv(tmp_path / "a.csv", index=False)
    assert main(["stats", str(tmp_path / "a.csv"), str(tmp_path / "a.csv"), "--metric",
                 "nsd"]) == 1
    assert "no column 'nsd'" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path, capsys):
    assert main(["demo", "-o", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "lesion_f1" in out and "cord Dice" in out
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    assert len(metrics) == 1 and 0 <= metrics.loc[0, "dice"] <= 1
    segmented = tmp_path / "segmentation" / "sub-phantom_T2w_label-SC_seg.nii.gz"
    assert segmented.exists()  # the bundled model segmented the phantom
    cord_dice = float(out.split("cord Dice ")[1].split()[0])
    assert cord_dice > 0.7  # the phantom's cord is found
    assert (tmp_path / "qc" / "index.html").exists()
    assert main(["demo", "-o", str(tmp_path)]) == 0  # re-runnable


def test_the_dispatcher_imports_no_heavy_library():
    """`msseg --help` and every subcommand start fast: the CLI imports torch, MONAI,
    matplotlib, pandas, scipy and nibabel only inside the subcommand that runs."""
    code = ("import sys, msseg.cli.main as m; m.build_parser(); "
            "print(sorted(k for k in ('torch', 'monai', 'matplotlib', 'pandas', 'scipy', "
            "'nibabel', 'SimpleITK') if k in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]"


def _modules_after(argv: list[str]) -> list[str]:
    """Heavy libraries in ``sys.modules`` after ``msseg ARGV`` ran in a fresh interpreter."""
    code = ("import sys; from msseg.cli.main import main; rc = main(sys.argv[1:]); "
            "assert rc == 0, rc; print(sorted(k for k in ('torch', 'monai', 'matplotlib') "
            "if k in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


def test_evaluate_and_onnx_segment_never_import_torch(tmp_path):
    """`evaluate` needs no deep learning library; `segment` with a bundled model runs in ONNX
    Runtime (the CPU default), so neither imports torch, MONAI or matplotlib."""
    import nibabel as nib
    import numpy as np

    from msseg import io
    from msseg.phantom import make_phantom

    ref = np.zeros((12, 12, 12), np.uint8)
    ref[3:8, 3:8, 3:8] = 1
    for name, mask in (("ref", ref), ("pred", np.roll(ref, 1, 0))):
        nib.save(nib.Nifti1Image(mask, np.eye(4)), tmp_path / f"{name}.nii.gz")
    assert _modules_after(["evaluate", "-p", str(tmp_path / "pred.nii.gz"), "-r",
                           str(tmp_path / "ref.nii.gz"), "-o", str(tmp_path / "m.csv")]) == "[]"
    io.save(make_phantom(0, shape=(96, 96, 6)).image, tmp_path / "t2.nii.gz")
    assert _modules_after(["segment", "lesion_ms_axial_t2", "-i", str(tmp_path / "t2.nii.gz"),
                           "-o", str(tmp_path / "seg")]) == "[]"
