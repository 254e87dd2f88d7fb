"""Per-scan records: the state of a scan before a run, and what changed."""

from __future__ import annotations

from msseg.inference import records

WANTED = records.fingerprint("m", {"threshold": 0.5, "threads": 2}, False, ("cord", "lesion"))


def outputs(tmp_path):
    return {"cord": tmp_path / "x_label-SC_seg.nii.gz", "table": tmp_path / "x_lesions.csv"}


def write(tmp_path, state, fingerprint=WANTED, sizes=None):
    records.write_record(tmp_path, "x", {"state": state, "fingerprint": fingerprint,
                                         "sizes": sizes or {}, "row": {"scan": "x"}})


def test_states(tmp_path):
    out = outputs(tmp_path)
    assert records.state_of(tmp_path, "x", out, WANTED).kind == "new"
    out["cord"].write_bytes(b"abc")
    assert records.state_of(tmp_path, "x", out, WANTED).kind == "conflict"  # not ours
    write(tmp_path, "running")
    assert records.state_of(tmp_path, "x", out, WANTED).kind == "redo"      # ours, unfinished
    out["table"].write_bytes(b"12345")
    write(tmp_path, "ok", sizes={"cord": 3, "table": 5})
    assert records.state_of(tmp_path, "x", out, WANTED).kind == "done"
    speed_only = records.fingerprint("m", {"threshold": 0.5, "threads": 1}, False,
                                     ("cord", "lesion"))
    assert records.state_of(tmp_path, "x", out, speed_only).kind == "done"
    out["cord"].write_bytes(b"edited by a rater")
    assert "changed after" in records.state_of(tmp_path, "x", out, WANTED).reason
    other = records.fingerprint("m", {"threshold": 0.05, "threads": 2}, False, ("cord", "lesion"))
    state = records.state_of(tmp_path, "x", out, other)
    assert state.kind == "conflict" and "threshold 0.5 → 0.05" in state.reason
    out["cord"].unlink()
    out["table"].unlink()
    write(tmp_path, "failed")  # a failure with other settings and no output: just redo it
    assert records.state_of(tmp_path, "x", out, other).kind == "redo"


def test_finished_rows_merge_every_record(tmp_path):
    for name, state in (("b", "ok"), ("a", "failed"), ("c", "running")):
        records.write_record(tmp_path, name, {"state": state, "row": {"scan": name}})
    (tmp_path / records.RECORD_DIR / "broken.json").write_text("{not json")
    assert [r["scan"] for r in records.finished_rows(tmp_path)] == ["a", "b"]
