"""Helpers shared by subcommands: output-path checks and terminal tables."""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Sequence
from functools import cache
from pathlib import Path

from msseg.errors import MssegError


@cache
def stderr():
    """The rich console on stderr (progress bars, warnings)."""
    from rich.console import Console

    return Console(stderr=True)


def check_outputs(paths: Iterable[Path | None], overwrite: bool) -> None:
    """Refuse to replace existing files unless ``overwrite``; refuse folders outright."""
    for path in paths:
        if path is None:
            continue
        if path.is_dir():
            raise MssegError(f"{path}: is a folder, expected a file path")
        if path.exists() and not overwrite:
            raise MssegError(f"{path}: exists; pass --overwrite to replace it")


def progress(items: Sequence, description: str, min_items: int = 5) -> Iterable:
    """A progress bar on stderr for runs of at least ``min_items`` items."""
    from rich.progress import track

    return track(items, description=description, console=stderr(), transient=True,
                 disable=len(items) < min_items)


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
        return "nan" if value != value else f"{value:.{digits}g}"
    return str(value)
