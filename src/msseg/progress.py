"""Progress on stderr for long work, shared by the commands and the experiments that run under
them (below every stage that reports progress, so none of them imports the CLI)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import cache


@cache
def stderr():
    """The rich console on stderr (progress bars, warnings)."""
    from rich.console import Console

    return Console(stderr=True)


def progress(items: Sequence, description: str, min_items: int = 5) -> Iterable:
    """A progress bar on stderr for runs of at least ``min_items`` items."""
    from rich.progress import track

    return track(items, description=description, console=stderr(), transient=True,
                 disable=len(items) < min_items)
