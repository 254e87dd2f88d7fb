"""Reliability: the bad-input catalogue against every command that reads images, output-path
refusals before any work, resume after a kill, reruns with other options, concurrent writers, a
killed worker, linked and annexed inputs, and a closed stdout pipe.

The bar (issue 13): exit code ≠ 0 for refusals, exactly one line on stderr naming the file, no
traceback, nothing written.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from bad_inputs import CATALOGUE, good_image, good_mask
from msseg import io
from msseg.cli.main import main
from msseg.inference.batch import Job, collect_inputs, folder_summary, run_batch, run_job
from msseg.inference.options import SegmentOptions

REPO = Path(__file__).resolve().parents[2]
COMMANDS = ("segment", "centerline", "normalize", "evaluate", "stitch", "straighten")
SCAN_COMMANDS = ("segment", "centerline")


def argv_for(command: str, bad: Path, good: Path, mask: Path, out: Path, model: Path) -> list:
    return {
        "segment": ["segment", model, "-i", bad, "-o", out],
        "centerline": ["centerline", "-i", bad, "-o", out, "--method", "intensity"],
        "normalize": ["normalize", "-i", bad, "-o", out / "n.nii.gz", "--method", "zscore"],
        "evaluate": ["evaluate", "-p", bad, "-r", mask, "-o", out / "m.csv"],
        "stitch": ["stitch", bad, good, "-o", out / "s.nii.gz"],
        "straighten": ["straighten", "-i", bad, "-s", mask, "-o", out],
        "dataset": ["dataset", "scan", bad.parent, "-o", out / "dataset.json"],
    }[command]


def one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert "Traceback" not in captured.err + captured.out
    assert len(lines) == 1, lines
    return lines[0]


#: kinds a folder scan meets (a NIfTI-named file in the tree) and refuses from the header alone
HEADER_KINDS = {"zero pixdim", "NaN sform", "singular sform", "NaN qform", "header claims 13 GB",
                "zero-size dimension", "complex", "RGB", "truncated .nii", "empty file",
                "garbage header", "not gzip"}
CASES = [(k, c) for k in CATALOGUE for c in COMMANDS if k.scope == "all" or c in SCAN_COMMANDS]
CASES += [(k, "dataset") for k in CATALOGUE if k.name in HEADER_KINDS]


@pytest.mark.parametrize("kind,command", CASES, ids=[f"{c}-{k.name}" for k, c in CASES])
def test_bad_input_catalogue(kind, command, tiny_model, tmp_path, capsys):
    model, _ = tiny_model
    (tmp_path / "in").mkdir()
    bad = kind.make(tmp_path / "in" / "bad_T2w.nii.gz")
    good = good_image(tmp_path / "in" / "good_T2w.nii.gz")
    mask = good_mask(tmp_path / "in" / "good_T2w_label-SC_seg.nii.gz")
    before = sorted(tmp_path.rglob("*"))
    out = tmp_path / "out"
    code = main([str(a) for a in argv_for(command, bad, good, mask, out, model)])
    line = one_error_line(capsys)
    assert code == 1, line
    assert line.startswith(f"msseg {command}: error: ") and bad.name in line, line
    assert kind.words.lower() in line.lower(), line
    assert not out.exists() and sorted(tmp_path.rglob("*")) == before  # nothing written


# ------------------------------------------------------------------ output paths, before work

def test_output_paths_are_refused_before_any_work(tiny_model, tmp_path, capsys):
    model, images = tiny_model
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    mask = good_mask(tmp_path / "m_label-lesion_seg.nii.gz")
    image = good_image(tmp_path / "img.nii.gz")
    cases = [
        (["segment", model, "-i", images[0], "-o", a_file / "out"], "is a file"),
        (["segment", model, "-i", images[0], "-o", a_file], "is a file"),
        (["segment", model, "-i", images[0], "-o", tmp_path / "o", "--qc", a_file], "is a file"),
        (["evaluate", "-p", mask, "-r", mask, "-o", tmp_path / "x.csv", "--summary",
          tmp_path / "x.csv"], "two outputs"),
        (["evaluate", "-p", mask, "-r", mask, "-o", mask], "output"),
        (["evaluate", "-p", mask, "-r", mask, "-o", tmp_path / "m.csv", "--summary",
          a_file / "s.csv"], "is a file"),
        (["normalize", "-i", image, "-o", tmp_path / "x.txt"], ".nii"),
        (["normalize", "-i", image, "-o", image, "--overwrite"], "overwrite the input"),
        (["centerline", "-i", image, tmp_path / "sub" / "img.nii.gz", "-o", tmp_path / "c"],
         "same name"),
        (["segment", model, "-i", images[0], "-o", tmp_path / "o", "--dask-scheduler",
          "tcp://127.0.0.1:9"], "cannot reach"),
    ]
    (tmp_path / "sub").mkdir()
    good_image(tmp_path / "sub" / "img.nii.gz")
    before = sorted(tmp_path.rglob("*"))
    for argv, words in cases:
        assert main([str(a) for a in argv]) == 1, argv
        line = one_error_line(capsys)
        assert words in line, (argv, line)
        assert sorted(tmp_path.rglob("*")) == before, argv  # nothing written, metrics.csv too


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_unwritable_locations_are_one_line_in_words(tiny_model, tmp_path, capsys):
    """Outputs and --summary under /proc (root may "access" it but no file can be made there)
    or /sys: one line naming the path, before any work, for segment, evaluate, centerline."""
    model, images = tiny_model
    mask = good_mask(tmp_path / "m_label-lesion_seg.nii.gz")
    cases = [
        ["segment", model, "-i", images[0], "-o", "/proc/msseg_out"],
        ["segment", model, "-i", images[0], "-o", tmp_path / "o", "--qc", "/proc/msseg_qc"],
        ["segment", model, "-i", images[0], "-o", "/sys/msseg_out"],
        ["evaluate", "-p", mask, "-r", mask, "-o", "/proc/m.csv"],
        ["evaluate", "-p", mask, "-r", mask, "-o", tmp_path / "m.csv", "--summary",
         "/proc/s.csv"],
        ["evaluate", "-p", mask, "-r", mask, "-o", tmp_path / "m.csv", "--per-lesion",
         "/sys/l.csv"],
        ["centerline", "-i", images[0], "-o", "/proc/msseg_c", "--method", "intensity"],
        ["centerline", "-i", images[0], "-o", "/sys/msseg_c", "--method", "intensity"],
    ]
    before = sorted(tmp_path.rglob("*"))
    for argv in cases:
        assert main([str(a) for a in argv]) == 1, argv
        line = one_error_line(capsys)
        assert "cannot write here" in line and ("/proc" in line or "/sys" in line), line
        assert "Errno" not in line and "internal error" not in line, line
        assert sorted(tmp_path.rglob("*")) == before, argv


def test_a_failing_write_is_one_line_naming_the_file(monkeypatch, capsys):
    """A write that fails during the work (a disk that fills, a mount gone read-only)."""
    from msseg.cli import stats

    def full(args):
        raise OSError(28, "No space left on device", "/data/out/summary.csv")

    monkeypatch.setattr(stats, "run", full)
    assert main(["stats", "x.csv"]) == 1
    line = one_error_line(capsys)
    assert line == "msseg stats: error: /data/out/summary.csv: No space left on device"


def test_closed_stdout_pipe_ends_quietly():
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run(f"'{sys.executable}' -m msseg.cli.main segment --list | head -1",
                          shell=True, capture_output=True, text=True, env=env, timeout=120)
    assert proc.stdout.count("\n") == 1 and proc.stderr == "", proc.stderr


def test_internal_error_is_one_line(monkeypatch, capsys):
    from msseg.cli import stats

    def boom(args):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(stats, "run", boom)
    assert main(["stats", "x.csv"]) == 3
    line = one_error_line(capsys)
    assert "internal error: ZeroDivisionError" in line and "MSSEG_DEBUG" in line


# ------------------------------------------------------------------ resume, rerun, concurrency

def scan_folder(images: list[Path], folder: Path, copies: int) -> Path:
    folder.mkdir(parents=True)
    for i in range(copies):
        for image in images:
            shutil.copy(image, folder / f"c{i}{image.name.replace('sub-', '_')}")
    return folder


def segment_cli(*argv) -> list[str]:
    return [sys.executable, "-m", "msseg.cli.main", "segment", *map(str, argv)]


def env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}


def comparable(summary: pd.DataFrame) -> pd.DataFrame:
    return summary.drop(columns="seconds").set_index("scan").sort_index()


@pytest.mark.slow
def test_resume_after_kill_gives_the_uninterrupted_summary(tiny_model, tmp_path):
    model, images = tiny_model
    folder = scan_folder(images, tmp_path / "in", copies=6)
    subprocess.run(segment_cli(model, "-i", folder, "-o", tmp_path / "full"), env=env(),
                   check=True, capture_output=True, timeout=600)
    out = tmp_path / "killed"
    proc = subprocess.Popen(segment_cli(model, "-i", folder, "-o", out), env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not list((out / ".msseg").glob("*.json")):
        time.sleep(0.01)
    while time.time() < deadline and len(list((out / ".msseg").glob("*.json"))) < 4:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    records = [json.loads(p.read_text()) for p in (out / ".msseg").glob("*.json")]
    assert 0 < sum(r["state"] == "ok" for r in records) < len(images) * 6  # really cut short
    (out / f".tmp-{os.uname().nodename}-{proc.pid}-dead.nii.gz").write_bytes(b"x")  # leftover
    result = subprocess.run(segment_cli(model, "-i", folder, "-o", out), env=env(),
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    full = pd.read_csv(tmp_path / "full" / "summary.csv")
    resumed = pd.read_csv(out / "summary.csv")
    pd.testing.assert_frame_equal(comparable(resumed), comparable(full))
    assert resumed.seconds.notna().all() and (resumed.seconds > 0).all()
    assert not list(out.glob(".tmp-*"))  # the dead writer's temporary is gone
    for mask in (tmp_path / "full").glob("*_seg.nii.gz"):
        np.testing.assert_array_equal(nib.load(mask).get_fdata(),
                                      nib.load(out / mask.name).get_fdata())


def test_rerun_with_other_options_is_refused_then_recomputed(tiny_model, tmp_path, capsys):
    model, images = tiny_model
    out = tmp_path / "out"
    assert main(["segment", str(model), "-i", str(images[0]), "-o", str(out)]) == 0
    capsys.readouterr()
    stem = io.strip_nifti_suffix(images[0].name)
    mask = out / f"{stem}_label-lesion_seg.nii.gz"
    made = mask.stat().st_mtime_ns
    # a speed-only option is not a different result: skipped, row kept
    assert main(["segment", str(model), "-i", str(images[0]), "-o", str(out), "--threads",
                 "1"]) == 0
    assert "skipped (done)" in capsys.readouterr().out and mask.stat().st_mtime_ns == made
    # another threshold: refused before any work, naming the change
    assert main(["segment", str(model), "-i", str(images[0]), "-o", str(out), "--threshold",
                 "0.05"]) == 1
    line = one_error_line(capsys)
    assert "threshold None → 0.05" in line and "--overwrite" in line
    assert mask.stat().st_mtime_ns == made
    assert main(["segment", str(model), "-i", str(images[0]), "-o", str(out), "--threshold",
                 "0.05", "--overwrite"]) == 0
    assert f"recomputing {stem}" in capsys.readouterr().err
    record = json.loads((out / ".msseg" / f"{stem}.json").read_text())
    assert record["state"] == "ok" and record["fingerprint"]["options"]["threshold"] == 0.05
    # a mask changed by hand (a rater's correction) is never silently replaced
    nib.save(nib.Nifti1Image(np.zeros((3, 3, 3), np.uint8), np.eye(4)), mask)
    assert main(["segment", str(model), "-i", str(images[0]), "-o", str(out), "--threshold",
                 "0.05"]) == 1
    assert "changed after msseg wrote it" in one_error_line(capsys)
    # a file of the right name that msseg did not write is not taken for a result
    other = tmp_path / "other"
    other.mkdir()
    (other / f"{stem}_label-SC_seg.nii.gz").write_bytes(b"not a mask")
    assert main(["segment", str(model), "-i", str(images[0]), "-o", str(other)]) == 1
    assert "no record" in one_error_line(capsys)


@pytest.mark.slow
def test_two_concurrent_writers_keep_every_row(tiny_model, tmp_path):
    model, images = tiny_model
    folder = scan_folder(images, tmp_path / "in", copies=4)
    files = sorted(folder.iterdir())
    out = tmp_path / "out"
    halves = (files[: len(files) // 2 + 2], files[len(files) // 2 - 2:])  # overlapping
    procs = [subprocess.Popen(segment_cli(model, "-i", *half, "-o", out), env=env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for half in halves]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0 and "Traceback" not in err, err
    summary = pd.read_csv(out / "summary.csv")
    assert sorted(summary.scan) == sorted(io.strip_nifti_suffix(f.name) for f in files)
    assert (summary.status == "ok").all() and summary.cord_volume_mm3.notna().all()
    json.loads((out / "segment_options.json").read_text())
    assert not list(out.glob(".tmp-*"))


def die_for_second_scan(job: Job) -> dict:
    """A worker that is killed from outside (as an OOM kill does) on one scan."""
    if job.name.startswith("c0_ph01"):
        os.kill(os.getpid(), signal.SIGKILL)
    return run_job(job)


def test_killed_worker_fails_its_scan_and_the_batch_goes_on(tiny_model, tmp_path):
    model, images = tiny_model
    folder = scan_folder(images, tmp_path / "in", copies=2)
    out = tmp_path / "out"
    options = SegmentOptions(threads=1)
    jobs = [Job(p, out, model, options, False) for p in collect_inputs([folder])]
    rows = run_batch(jobs, n_jobs=2, worker=die_for_second_scan).set_index("scan")
    # a scan in flight beside the killed one may have finished just before: then "skipped"
    assert rows.status.isin(["ok", "failed", "skipped (done)"]).all() and len(rows) == 6
    summary = folder_summary(out).set_index("scan")  # what summary.csv holds
    assert summary.loc["c0_ph01_T2w", "status"] == "failed"
    assert "worker process died" in summary.loc["c0_ph01_T2w", "error"]
    assert (summary.drop(index="c0_ph01_T2w").status == "ok").all() and len(summary) == 6


def test_linked_and_annexed_inputs_are_named_as_given(tiny_model, tmp_path):
    model, images = tiny_model
    dataset = tmp_path / "ds"
    key = "MD5E-s1234--0123456789abcdef.nii.gz"
    annexed = dataset / ".git" / "annex" / "objects" / "Xy" / "Zw" / key / key
    annexed.parent.mkdir(parents=True)
    shutil.copy(images[0], annexed)
    (dataset / "sub-01" / "anat").mkdir(parents=True)
    (dataset / "sub-01" / "anat" / "sub-01_T2w.nii.gz").symlink_to(annexed)
    (dataset / "patientA.nii.gz").symlink_to(images[1])
    inputs = collect_inputs([dataset])
    assert [p.name for p in inputs] == ["patientA.nii.gz", "sub-01_T2w.nii.gz"]
    out = tmp_path / "out"
    assert main(["segment", str(model), "-i", str(dataset), "-o", str(out)]) == 0
    names = {p.name for p in out.glob("*_seg.nii.gz")}
    assert names == {"patientA_label-SC_seg.nii.gz", "patientA_label-lesion_seg.nii.gz",
                     "sub-01_T2w_label-SC_seg.nii.gz", "sub-01_T2w_label-lesion_seg.nii.gz"}


def test_outputs_honour_the_umask(tiny_model, tmp_path):
    model, images = tiny_model
    old = os.umask(0o022)
    try:
        assert main(["segment", str(model), "-i", str(images[0]), "-o", str(tmp_path / "o")]) == 0
    finally:
        os.umask(old)
    files = [p for p in (tmp_path / "o").rglob("*") if p.is_file()]
    assert len(files) == 8  # 2 masks, lesion table, summary, options, record, 2 locks
    for path in files:
        assert path.stat().st_mode & 0o777 == 0o644, path


def test_evaluate_chains_on_segment_output_by_structure(tiny_model, tmp_path, capsys):
    model, images = tiny_model
    out = tmp_path / "seg"
    assert main(["segment", str(model), "-i", *map(str, images[:2]), "-o", str(out),
                 "--soft"]) == 0
    for structure, label in (("lesion", "lesion"), ("cord", "SC")):
        metrics = tmp_path / f"{structure}.csv"
        assert main(["evaluate", "-p", str(out), "-r", str(out), "--structure", structure,
                     "-o", str(metrics)]) == 0
        table = pd.read_csv(metrics)
        assert len(table) == 2 and (table.dice.fillna(1.0) == 1.0).all()
        volume = nib.load(out / f"{table.case[0]}_label-{label}_seg.nii.gz").get_fdata().sum()
        assert table.ref_volume_mm3[0] == pytest.approx(
            volume * np.prod(nib.load(images[0]).header.get_zooms()[:3]))


def test_centerline_is_all_or_nothing(tmp_path, capsys):
    good = good_image(tmp_path / "good_T2w.nii.gz")
    bad = CATALOGUE[0].make(tmp_path / "bad_T2w.nii.gz")
    out = tmp_path / "out"
    assert main(["centerline", "-i", str(good), str(bad), "-o", str(out), "--method",
                 "intensity"]) == 1
    assert bad.name in one_error_line(capsys)
    assert not out.exists()  # the good input's centerline was not written either
