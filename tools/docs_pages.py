"""Write the documentation pages that are generated from the code and from the files that hold
the results, so the site can never drift from them (``make docs`` runs this, then MkDocs):

* ``docs/reference/cli/``: one page per subcommand, from its argument parser;
* ``docs/reference/metrics.md``: from ``msseg.evaluation.metrics.REGISTRY``;
* ``docs/reference/models/``: the bundled models' cards;
* ``docs/results/``: each recipe's ``README.md`` (the experiments' results);
* ``docs/benchmarks.md`` and ``docs/changelog.md``: ``benchmarks/README.md`` and
  ``CHANGELOG.md``.

Generated pages are not committed (``.gitignore``). Links in copied files are rewritten to
work from their new place; a link to a file that is not on the site becomes its repository
path in code. Run: ``.venv/bin/python tools/docs_pages.py``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
GENERATED = ("reference/cli", "reference/models", "results", "reference/metrics.md",
             "benchmarks.md", "changelog.md")
LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)")


def copied_pages() -> dict[Path, Path]:
    """Repository file -> its page under docs/ (the files whose copies are generated)."""
    pages = {ROOT / "benchmarks" / "README.md": DOCS / "benchmarks.md",
             ROOT / "CHANGELOG.md": DOCS / "changelog.md"}
    for readme in sorted((ROOT / "recipes").glob("*/README.md")):
        pages[readme] = DOCS / "results" / f"{readme.parent.name}.md"
    for card in sorted((ROOT / "src/msseg/models/bundled").glob("*/model_card.md")):
        pages[card] = DOCS / "reference" / "models" / f"{card.parent.name}.md"
    return pages


def rewrite_links(text: str, source: Path, target: Path, pages: dict[Path, Path]) -> str:
    """Links of ``text`` (written in ``source``'s folder) made to work from ``target``."""
    def fix(match: re.Match) -> str:
        bang, label, link = match.groups()
        if re.match(r"^[a-z]+:", link) or link.startswith("#"):
            return match.group(0)
        path, _, anchor = link.partition("#")
        resolved = (source.parent / path).resolve()
        if resolved in pages:
            resolved = pages[resolved]
        if DOCS in resolved.parents and (resolved.exists() or resolved in pages.values()):
            new = os.path.relpath(resolved, target.parent) + (f"#{anchor}" if anchor else "")
            return f"{bang}[{label}]({new})"
        repo_path = os.path.relpath(resolved, ROOT)
        return f"{label} (`{repo_path}`)" if label and not bang else f"`{repo_path}`"
    return LINK.sub(fix, text)


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def cli_pages(folder: Path = DOCS / "reference" / "cli") -> None:
    os.environ["COLUMNS"] = "88"
    from msseg.cli.main import build_parser

    parser = build_parser()
    commands = _subcommands(parser)
    index = ["# Command reference", "",
             "Generated from the argument parsers (`tools/docs_pages.py`): every option here is",
             "one the code accepts.", "", "| command | what it does |", "|---|---|"]
    for name, (sub, helptext) in commands.items():
        index.append(f"| [`msseg {name}`]({name}.md) | {helptext} |")
        write(folder / f"{name}.md", _command_page(f"msseg {name}", sub))
    write(folder / "index.md", "\n".join(index) + "\n")


def _subcommands(parser: argparse.ArgumentParser) -> dict:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            return {name: (sub, helps.get(name, "")) for name, sub in action.choices.items()}
    return {}


def _command_page(title: str, parser: argparse.ArgumentParser, level: str = "#") -> str:
    """A command's page: usage, its description as prose, a table of its options, then its
    own subcommands."""
    page = [f"{level} {title}", "", "```text", parser.format_usage().strip(), "```", ""]
    if parser.description:
        page += [_prose(parser.description), ""]
    rows = [_option_row(a) for a in parser._actions
            if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))]
    if rows:
        page += ["| option | value | default | what it does |", "|---|---|---|---|", *rows, ""]
    for name, (sub, _) in _subcommands(parser).items():
        page += [_command_page(f"{title} {name}", sub, level + "#")]
    return "\n".join(page)


def _prose(text: str) -> str:
    """reStructuredText-flavoured docstring text as Markdown."""
    text = re.sub(r":(?:mod|func|class|data|meth):`~?([^`]+)`", r"`\1`", text)
    return text.replace("``", "`")


def _option_row(action: argparse.Action) -> str:
    flags = ", ".join(f"`{f}`" for f in action.option_strings) or f"`{action.dest}`"
    if action.choices is not None:
        value = " \\| ".join(f"`{c}`" for c in action.choices)
    elif action.nargs == 0:
        value = ""
    else:
        metavar = action.metavar or action.dest.upper()
        value = f"`{' '.join(metavar) if isinstance(metavar, tuple) else metavar}`"
        if action.nargs in ("+", "*"):
            value += " …"
    default = action.default
    shown = "" if default in (None, False, argparse.SUPPRESS) or action.nargs == 0 \
        else f"`{default}`"
    required = " (required)" if action.required else ""
    helptext = _prose(action.help or "").replace("|", "\\|").replace("\n", " ")
    return f"| {flags}{required} | {value} | {shown} | {helptext} |"


def metrics_page() -> None:
    from msseg.evaluation.metrics import markdown_table

    write(DOCS / "reference" / "metrics.md", "\n".join([
        "# Metrics", "",
        "The columns of `msseg evaluate`'s metrics CSV, in order. Generated from the registry",
        "`msseg.evaluation.metrics.REGISTRY`, which also orders the CSV's columns. P is the",
        "prediction, R the reference, S_X the surface of X (the mask minus its 6-connected",
        "erosion), d the Euclidean distance in mm.", "", markdown_table()]))


def copies() -> None:
    pages = copied_pages()
    for source, target in pages.items():
        text = rewrite_links(source.read_text(), source, target, pages)
        write(target, text)
    cards = sorted(p for s, p in pages.items() if s.name == "model_card.md")
    write(DOCS / "reference" / "models" / "index.md", "\n".join(
        ["# Model cards", "", "The cards of the models msseg ships, as packaged with them.", ""]
        + [f"- [`{p.stem}`]({p.name})" for p in cards]) + "\n")
    results = sorted(p for s, p in pages.items() if s.name == "README.md"
                     and s.parent.parent.name == "recipes")
    write(DOCS / "results" / "index.md", "\n".join(
        ["# Results", "", "Each experiment's results, as its recipe's `README.md` records them.",
         ""] + [f"- [`recipes/{p.stem}`]({p.name})" for p in results]) + "\n")


def clean() -> None:
    for name in GENERATED:
        path = DOCS / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def main() -> None:
    clean()
    cli_pages()
    metrics_page()
    copies()
    print(f"generated pages under {DOCS}")


if __name__ == "__main__":
    main()
