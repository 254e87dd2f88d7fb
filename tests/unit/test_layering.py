"""The packages import one another in the direction the data flows (docs/explanation/
architecture.md and pipeline.md): io -> preprocess -> centerline -> models -> inference ->
postprocess -> lesions -> evaluation -> report -> experiments -> cli. Training sits beside
inference (it imports models, preprocess, data and the scores it validates with) and is imported
by neither; data (dataset indexes, synthesis) sits below training; evaluation imports neither
models nor inference (a score does not depend on how a mask was made). Top-level modules (image,
io, bids, errors, progress, postprocess, lesions, levels…) are their own stage, named by their
stem. And no module imports itself back through others (no import cycle, lazy imports included)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "msseg"
TOP = ("inference", "training", "evaluation", "report", "experiments", "cli")
FORBIDDEN = {
    "io": ("preprocess", "centerline", "models", "data", "postprocess", "lesion_table", *TOP),
    "bids": ("io", "preprocess", "centerline", "models", "data", *TOP),
    "progress": ("preprocess", "centerline", "models", "data", *TOP),
    "preprocess": ("centerline", "models", "data", "postprocess", "lesion_table", *TOP),
    "centerline": ("models", "data", "postprocess", "lesion_table", *TOP),
    "models": ("data", "postprocess", "lesion_table", *TOP),
    "inference": ("data", "training", "evaluation", "report", "experiments", "cli"),
    "postprocess": ("centerline", "models", "data", "lesion_table", *TOP),
    "lesion_table": ("centerline", "models", "data", *TOP),
    "lesion_location": ("centerline", "models", "data", "postprocess", "lesion_table", *TOP),
    "morphometry": ("centerline", "models", "data", "postprocess", "lesion_table",
                    "lesion_measures", *TOP),
    "lesion_measures": ("centerline", "models", "data", "postprocess", "lesion_table", *TOP),
    "evaluation": ("centerline", "models", "data", "inference", "training", "report",
                   "experiments", "cli"),
    "report": ("models", "data", "inference", "training", "experiments", "cli"),
    "data": ("centerline", "models", *TOP),
    "training": ("inference", "report", "experiments", "cli"),
    "experiments": ("cli",),
}


def imports_of(path: Path) -> list[str]:
    """Every msseg module a file imports, at its top or inside a function: ``from msseg.a
    import b`` gives ``msseg.a.b`` (b may be a module or a name in ``msseg.a``)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names]
    return [name for name in found if name.split(".")[0] == "msseg"]


def imported_packages(path: Path) -> set[str]:
    return {name.split(".")[1] for name in imports_of(path) if name.count(".") >= 1}


def stage_of(path: Path, src: Path = SRC) -> str:
    rel = path.relative_to(src)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def offences(src: Path) -> list[str]:
    found = []
    for path in sorted(src.rglob("*.py")):
        stage = stage_of(path, src)
        bad = imported_packages(path) & set(FORBIDDEN.get(stage, ()))
        found += [f"{path.relative_to(src)} imports msseg.{b}" for b in sorted(bad)]
    return found


def module_graph(src: Path) -> dict[str, set[str]]:
    """Module -> the msseg modules it imports (a name imported from a package counts as the
    package's ``__init__``)."""
    names = {}
    for path in src.rglob("*.py"):
        parts = path.relative_to(src.parent).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for name, path in names.items():
        targets = set()
        for imported in imports_of(path):
            target = imported if imported in names else imported.rsplit(".", 1)[0]
            if target in names and target != name:
                targets.add(target)
        graph[name] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_stage_imports_a_later_one():
    assert offences(SRC) == []


def test_no_import_cycle():
    assert cycles(module_graph(SRC)) == []


@pytest.mark.parametrize("module,line", [
    # the arrows that ran against the data flow before (issue 29), one each
    ("evaluation/holdout.py", "from msseg.inference.segment import make_segmenter"),
    ("evaluation/holdout.py", "from msseg.models.registry import ModelFolder"),
    ("evaluation/groups.py", "from msseg.data.index import contrast_of"),
    ("inference/batch.py", "from msseg.report.qc import scan_figures"),
    ("inference/batch.py", "from msseg.data.index import is_mask_name"),
    ("experiments/cross_dataset.py", "from msseg.cli.common import progress"),
    ("centerline/finder.py", "from msseg.models.windows import sigmoid"),
    ("centerline/finder.py", "from msseg.models.registry import find_model"),
    ("preprocess/x.py", "from msseg.centerline.detect import Centerline"),
    ("models/x.py", "from msseg.inference.options import SegmentOptions"),
    ("training/x.py", "from msseg.inference.segment import Segmenter"),
    ("data/x.py", "from msseg.training.config import TrainConfig"),
    ("report/x.py", "from msseg.inference.batch import Job"),
    ("experiments/x.py", "import msseg.cli.main"),
])
def test_the_checker_sees_each_wrong_arrow(tmp_path, module, line):
    src = tmp_path / "msseg"
    path = src / module
    path.parent.mkdir(parents=True)
    path.write_text(f"{line}\n")
    assert offences(src) == [f"{module} imports msseg.{line.split('msseg.')[1].split('.')[0]}"]


def test_the_checker_sees_a_cycle_through_a_lazy_import(tmp_path):
    src = tmp_path / "msseg"
    (src / "cli").mkdir(parents=True)
    (src / "cli" / "main.py").write_text("from msseg.cli import demo\n")
    (src / "cli" / "demo.py").write_text("def run():\n    from msseg.cli.main import main\n")
    (src / "cli" / "segment.py").write_text("from msseg.cli import common\n")
    (src / "cli" / "common.py").write_text("X = 1\n")
    assert cycles(module_graph(src)) == [["msseg.cli.demo", "msseg.cli.main"]]
