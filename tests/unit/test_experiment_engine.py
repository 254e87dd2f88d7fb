"""The experiment engine: resumable scoring, one tidy table, torn writes dropped."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from msseg.experiments import engine
from msseg.experiments.engine import AppendTable, Run, Scored, run_design
from msseg.training.config import TrainConfig


class Killed(Exception):
    pass


class Design:
    table = "results.csv"

    def __init__(self, kill_at: int | None = None):
        self.calls: list[tuple[str, str]] = []
        self.kill_at = kill_at

    def runs(self, out: Path) -> list[Run]:
        return [Run(f"m{i}", TrainConfig(), meta={"dims": i + 2}) for i in range(2)]

    def cases(self, run: Run) -> list[str]:
        return ["a", "b", "c"]

    def score(self, run: Run, model, case: str) -> Scored:
        if self.kill_at is not None and len(self.calls) == self.kill_at:
            raise Killed
        self.calls.append((run.name, case))
        return Scored([{"dice": len(self.calls) / 10}], [{"lesion_id": 1}, {"lesion_id": 2}])

    def summarize(self, results, lesions, out):
        return {"n": pd.DataFrame({"rows": [len(results)], "lesions": [len(lesions)]})}


def test_killed_run_resumes_without_rescoring(tmp_path, monkeypatch):
    trained = []
    monkeypatch.setattr(engine, "trained_model", lambda run, out: trained.append(run.name))
    first = Design(kill_at=4)
    with pytest.raises(Killed):
        run_design(first, tmp_path)
    assert first.calls == [("m0", "a"), ("m0", "b"), ("m0", "c"), ("m1", "a")]
    second = Design()
    result = run_design(second, tmp_path)
    assert second.calls == [("m1", "b"), ("m1", "c")]          # only what was missing
    table = result["results"]
    assert list(table.columns) == ["model", "case", "dims", "dice"]
    assert list(zip(table.model, table.case, strict=True)) == [
        (m, c) for m in ("m0", "m1") for c in "abc"]
    assert table.dims.tolist() == [2, 2, 2, 3, 3, 3]
    assert result["n"].to_dict("records") == [{"rows": 6, "lesions": 12}]
    assert trained == ["m0", "m1", "m0", "m1"]   # trained_model asked once per run and call


def test_lesion_rows_of_a_case_killed_before_its_result_are_dropped(tmp_path, monkeypatch):
    monkeypatch.setattr(engine, "trained_model", lambda run, out: None)
    lesions = AppendTable(tmp_path / "lesions.csv")
    lesions.add([{"model": "m0", "case": "a", "lesion_id": 9}])    # orphan: no result row
    result = run_design(Design(), tmp_path)
    assert len(pd.read_csv(tmp_path / "lesions.csv")) == 12
    assert result["n"].lesions.item() == 12


def test_torn_last_line_is_dropped(tmp_path):
    table = AppendTable(tmp_path / "t.csv")
    table.add([{"model": "m", "case": "a", "x": 1}, {"model": "m", "case": "b", "x": 2}])
    with open(tmp_path / "t.csv", "a") as handle:
        handle.write("m,c,")                       # killed in the middle of a row
    again = AppendTable(tmp_path / "t.csv")
    assert again.has("m", "b") and not again.has("m", "c")
    again.add([{"model": "m", "case": "c", "x": 3}])
    assert pd.read_csv(tmp_path / "t.csv").x.tolist() == [1, 2, 3]


def test_a_new_column_extends_the_table(tmp_path):
    table = AppendTable(tmp_path / "t.csv")
    table.add([{"model": "m", "case": "a", "x": 1}])
    table.add([{"model": "m", "case": "b", "x": 2, "y": 5}])
    read = pd.read_csv(tmp_path / "t.csv")
    assert list(read.columns) == ["model", "case", "x", "y"]
    assert read.x.tolist() == [1, 2] and read.y.isna().tolist() == [True, False]
