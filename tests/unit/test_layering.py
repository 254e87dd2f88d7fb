"""The packages import one another in the direction the data flows (STYLE.md): io ->
preprocess -> models -> centerline -> inference -> postprocess / lesions -> evaluation ->
report; training sits beside inference and is never imported by it."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "msseg"
LATER = ("centerline", "inference", "training", "evaluation", "report", "experiments", "cli")
FORBIDDEN = {
    "preprocess": ("models", "data", "postprocess", "lesions", *LATER),
    "models": LATER,
    "centerline": LATER[1:],
    "inference": ("training", "experiments", "cli"),
    "postprocess": ("models", *LATER),
    "lesions": ("models", *LATER),
}


def imported_packages(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "msseg" and len(parts) > 1:
                found.add(parts[1])
    return found


def stage_of(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def test_no_stage_imports_a_later_one():
    offences = []
    for path in sorted(SRC.rglob("*.py")):
        stage = stage_of(path)
        bad = imported_packages(path) & set(FORBIDDEN.get(stage, ()))
        offences += [f"{path.relative_to(SRC)} imports msseg.{b}" for b in sorted(bad)]
    assert offences == []


def test_the_checker_sees_an_offence(tmp_path):
    module = tmp_path / "x.py"
    module.write_text("from msseg.training.config import TrainConfig\nimport msseg.cli.main\n")
    assert imported_packages(module) == {"training", "cli"}
