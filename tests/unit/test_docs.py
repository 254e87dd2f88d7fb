"""The documentation: the command reference covers every subcommand and option, the README is
an index, hand-written pages copy no scores, and the metric registry names the CSV columns."""

from __future__ import annotations

import argparse
import importlib.util
import re
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
# pages written by tools/docs_pages.py (from the code, the cards, the results' files)
GENERATED = ("reference/cli", "reference/models", "reference/metrics.md", "results",
             "benchmarks.md", "changelog.md")
SCORE = re.compile(r"(?<![\w.])\d\.\d{3,}")      # 0.346, not doi:10.1038


def docs_pages():
    spec = importlib.util.spec_from_file_location("docs_pages", ROOT / "tools" / "docs_pages.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parsers(parser: argparse.ArgumentParser, name: str = "msseg"):
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from parsers(sub, f"{name} {sub_name}")


def test_every_subcommand_and_option_is_in_the_generated_reference(tmp_path):
    from msseg.cli.main import build_parser

    docs_pages().cli_pages(tmp_path)
    pages = {p.stem: p.read_text() for p in tmp_path.glob("*.md")}
    checked = 0
    for name, parser in parsers(build_parser()):
        words = name.split()
        if len(words) == 1:
            continue
        page = pages[words[1]]
        assert f"# {name}" in page, name
        for action in parser._actions:
            for flag in action.option_strings:
                if flag not in ("-h", "--help"):
                    assert f"`{flag}`" in page, f"{name} {flag}"
                    checked += 1
    assert checked > 150
    assert "[`msseg morphometry`](morphometry.md)" in pages["index"]


def test_readme_is_an_index():
    text = (ROOT / "README.md").read_text()
    assert len(text.encode()) <= 10_000
    lines = text.splitlines()
    assert lines[1].startswith("make demo") and lines[2].startswith("make test")
    assert not SCORE.search(text), SCORE.findall(text)
    assert not re.search(r"20\d\d-\d\d-\d\d", text), "a dated run in the README"
    assert not re.search(r"\bissue \d+", text, re.I)


def test_hand_written_pages_copy_no_scores():
    """Numbers live in the cards, the recipes' results and the benchmarks' record; the pages
    generated from them are the only ones that show them."""
    found = []
    for page in (ROOT / "docs").rglob("*.md"):
        rel = page.relative_to(ROOT / "docs").as_posix()
        if rel.startswith(GENERATED):
            continue
        found += [f"{rel}: {m}" for m in SCORE.findall(page.read_text())]
    assert not found


def test_links_of_copied_pages_are_rewritten():
    module = docs_pages()
    source = ROOT / "recipes" / "lesion_ms" / "README.md"
    target = ROOT / "docs" / "results" / "lesion_ms.md"
    pages = {source: target, ROOT / "benchmarks" / "README.md": ROOT / "docs" / "benchmarks.md"}
    text = ("[bench](../../benchmarks/README.md#x) ![s](../../docs/index.md) "
            "[code](build_data.py) [web](https://example.org) [here](#top)")
    out = module.rewrite_links(text, source, target, pages)
    assert "[bench](../benchmarks.md#x)" in out
    assert "![s](../index.md)" in out
    assert "code (`recipes/lesion_ms/build_data.py`)" in out
    assert "[web](https://example.org)" in out and "[here](#top)" in out


def test_the_metric_registry_names_the_csv_columns():
    from msseg.evaluation.engine import METRIC_COLUMNS, evaluate_masks
    from msseg.evaluation.metrics import REGISTRY, markdown_table

    mask = np.zeros((6, 6, 6), bool)
    mask[2:4, 2:4, 2:4] = True
    metrics, _ = evaluate_masks(mask, mask, (1.0, 1.0, 1.0))
    assert list(metrics) == list(METRIC_COLUMNS) == [m.name for m in REGISTRY]
    table = markdown_table()
    assert all(f"| `{m.name}` |" in table for m in REGISTRY)
    assert all(m.formula and m.reference and m.empty for m in REGISTRY)


def test_module_docstrings_are_short():
    """A module's docstring is its summary (≤ 10 lines); design notes live in
    docs/explanation/design-notes.md."""
    import ast

    long = []
    for path in (ROOT / "src" / "msseg").rglob("*.py"):
        doc = ast.get_docstring(ast.parse(path.read_text()), clean=False)
        if doc and len(doc.splitlines()) > 10:
            long.append(str(path.relative_to(ROOT)))
    assert not long
