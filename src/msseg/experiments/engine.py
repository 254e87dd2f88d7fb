"""One experiment engine for every design (``msseg experiment cross-dataset | preprocessing``).

Design notes: docs/explanation/design-notes.md#mssegexperimentsengine.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import pandas as pd

from msseg.training.config import TrainConfig


@dataclass(frozen=True)
class Run:
    name: str                          # unique; its folder is OUT/runs/<name>
    config: TrainConfig | None         # its dataset is set by the design; output by the engine
    #                                    (None: nothing to train; design.load_model gives it)
    checkpoint: str = "best"           # packaged checkpoint: best | last
    meta: dict = field(default_factory=dict)   # columns every row of this run carries


@dataclass(frozen=True)
class Scored:
    rows: list[dict]                   # rows of the results table for one test case
    lesions: list[dict] = field(default_factory=list)   # per-lesion rows (optional)


class Design(Protocol):
    table: str                         # file name of the tidy results table in OUT

    def runs(self, out: Path) -> list[Run]: ...

    def cases(self, run: Run) -> Sequence[str]: ...

    def score(self, run: Run, model, case: str) -> Scored: ...

    def load_model(self, run: Run, out: Path): ...   # runs without a config only

    def summarize(self, results: pd.DataFrame, lesions: pd.DataFrame,
                  out: Path) -> dict[str, pd.DataFrame]: ...


def run_design(design: Design, out: str | Path,
               wrap: Callable[[Sequence, str], Iterable] = lambda items, _: items
               ) -> dict[str, pd.DataFrame]:
    """Train what is missing, score what is not scored yet, summarise (see module)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results = AppendTable(out / design.table)
    lesions = AppendTable(out / "lesions.csv")
    lesions.keep_only(results.scored)   # a case killed before its results row: scored again
    for run in design.runs(out):
        model = trained_model(run, out) if run.config is not None else \
            design.load_model(run, out)
        todo = [c for c in design.cases(run) if not results.has(run.name, c)]
        for case in wrap(todo, run.name):
            scored = design.score(run, model, case)
            lesions.add([{"model": run.name, "case": case, **run.meta, **row}
                         for row in scored.lesions])
            results.add([{"model": run.name, "case": case, **run.meta, **row}
                         for row in scored.rows])
    table = results.read()
    summary = design.summarize(table, lesions.read(), out)
    return {"results": table, **summary}


def trained_model(run: Run, out: Path):
    """The packaged model of ``run`` (OUT/runs/<name>/model), trained first if missing."""
    from msseg.models.registry import open_model
    from msseg.training.loop import train
    from msseg.training.package import package_checkpoint

    run_dir = out / "runs" / run.name
    model_dir = run_dir / "model"
    if not (model_dir / "model.pt").exists():
        train(run.config.replace(output=str(run_dir)), resume=True)
        package_checkpoint(run_dir / f"checkpoint_{run.checkpoint}.pt", model_dir,
                           f"# experiment run {run.name}\n\n{run.meta}\n")
    return open_model(model_dir)


class AppendTable:
    """A CSV appended row group by row group, each flushed to disk: what a killed run had
    written stays; a torn last line (killed mid-write) is dropped when read back. Columns are
    fixed by the first rows written."""

    def __init__(self, path: Path):
        self.path = path
        self.columns: list[str] | None = None
        self.scored: set[tuple[str, str]] = set()
        table = self.read()
        if len(table.columns):
            self.columns = list(table.columns)
            if {"model", "case"} <= set(table.columns):
                self.scored = set(zip(table.model.astype(str), table.case.astype(str),
                                      strict=True))

    def has(self, model: str, case: str) -> bool:
        return (model, case) in self.scored

    def add(self, rows: list[dict]) -> None:
        if not rows:
            return
        keys = list(dict.fromkeys(k for row in rows for k in row))
        if self.columns is not None and not set(keys) <= set(self.columns):
            old = self.read()            # a new column: rewrite with the union of columns
            self.path.unlink()
            self.columns = None
            rows = old.to_dict("records") + rows
            keys = list(dict.fromkeys([*old.columns, *keys]))
        new_file = self.columns is None
        if new_file:
            self.columns = keys
        with open(self.path, "a" if not new_file else "w", newline="") as handle:
            writer = csv.DictWriter(handle, self.columns, restval="")
            if new_file:
                writer.writeheader()
            writer.writerows(rows)
            handle.flush()
            os.fsync(handle.fileno())
        self.scored |= {(str(r["model"]), str(r["case"])) for r in rows if "model" in r}

    def keep_only(self, scored: set[tuple[str, str]]) -> None:
        """Drop the rows of (model, case) pairs outside ``scored``."""
        table = self.read()
        if not len(table.columns) or not {"model", "case"} <= set(table.columns):
            return
        keep = [(str(m), str(c)) in scored for m, c in zip(table.model, table.case,
                                                              strict=True)]
        if not all(keep):
            from msseg import io

            if any(keep):
                io.write_csv(table[keep], self.path)
            else:
                self.path.unlink()
                self.columns = None
            self.scored = {p for p in self.scored if p in scored}

    def read(self) -> pd.DataFrame:
        if not self.path.is_file() or self.path.stat().st_size == 0:
            return pd.DataFrame()
        text = self.path.read_text()
        if not text.endswith("\n"):            # torn last line: drop it, on disk too
            text = text[:text.rfind("\n") + 1]
            self.path.write_text(text)
        from io import StringIO

        return pd.read_csv(StringIO(text)) if text else pd.DataFrame()
