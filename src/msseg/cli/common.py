"""Helpers shared by subcommands: output-path checks and terminal tables."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from msseg.errors import MssegError


def check_outputs(paths: Iterable[Path | None], overwrite: bool,
                  inputs: Iterable[Path] = (), suffixes: tuple[str, ...] = ()) -> None:
    """Validate output file paths before any work, so that a bad path never costs a run and
    never leaves partial results: each must not be a folder, not exist (unless
    ``overwrite``), not be an input, not repeat another output, end in one of ``suffixes`` (when
    given), and lie in a folder that exists or can be created and is writable."""
    seen: dict[Path, Path] = {}
    given = {_key(p): p for p in inputs}
    for path in paths:
        if path is None:
            continue
        if suffixes and not str(path).endswith(suffixes):
            raise MssegError(f"{path}: output must end in {' or '.join(suffixes)}")
        key = _key(path)
        if key in given:
            raise MssegError(f"{path}: output would overwrite the input {given[key]}")
        if key in seen:
            raise MssegError(f"{path}: given for two outputs; each needs its own file")
        seen[key] = path
        if path.is_dir():
            raise MssegError(f"{path}: is a folder, expected a file path")
        if path.exists() and not overwrite:
            raise MssegError(f"{path}: exists; pass --overwrite to replace it")
        check_folder(path.parent)


def check_folder(folder: Path) -> None:
    """Refuse an output folder that cannot be created or written, before any work."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        if existing.is_symlink():
            raise MssegError(f"{existing}: is a broken link; cannot write under it")
        existing = existing.parent
    if not existing.is_dir():
        raise MssegError(f"{folder}: cannot write here: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise MssegError(f"{folder}: cannot write here: {existing} is not writable")
    _probe(folder, existing)


def _probe(folder: Path, existing: Path) -> None:
    """Create and remove a file in ``existing``: access() says yes to root everywhere, but
    /proc, /sys and read-only mounts refuse to create files."""
    import tempfile

    try:
        fd, name = tempfile.mkstemp(prefix=".msseg-probe-", dir=existing)
    except OSError as exc:
        raise MssegError(f"{folder}: cannot write here: {existing} does not take new files "
                         f"({exc.strerror or exc})") from exc
    os.close(fd)
    os.unlink(name)


def _key(path: Path) -> Path:
    return Path(os.path.realpath(path))


def print_table(df, title: str, digits: int = 4) -> None:
    """Print a DataFrame as a table on stdout; missing text cells are left blank."""
    import pandas as pd
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    text = [not pd.api.types.is_numeric_dtype(df[col]) or bool(df[col].isna().all())
            for col in df.columns]
    for col, is_text in zip(df.columns, text, strict=True):
        table.add_column(str(col), justify="left" if is_text else "right", no_wrap=is_text)
    for _, row in df.iterrows():
        table.add_row(*(_fmt(v, digits, t) for v, t in zip(row, text, strict=True)))
    Console(width=max(shutil.get_terminal_size().columns, 120)).print(table)


def _fmt(value, digits: int, is_text: bool) -> str:
    import pandas as pd

    if value is None or (is_text and pd.isna(value)):
        return ""
    if isinstance(value, float):
        if value != value:
            return "nan"
        if 10 ** digits <= abs(value) < 1e12:      # 53,350.2, not 5.335e+04
            return f"{value:,.1f}"
        return f"{value:.{digits}g}"
    return str(value)


def run_subcommand(module, argv: list[str]) -> int:
    """A subcommand run in this process as ``msseg`` runs it, through its own parser and
    ``run`` (for commands built on others: ``demo``, ``agree``; the caller is itself run by
    :func:`msseg.cli.main.main`, whose handler turns any failure into one line)."""
    import argparse

    parser = argparse.ArgumentParser(prog="msseg")
    module.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.run(args) or 0)
