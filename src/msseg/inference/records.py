"""Per-scan records of an output folder: what made each scan's outputs, and its summary row.

Design notes: docs/explanation/design-notes.md#msseginferencerecords.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from msseg import __version__, io

RECORD_DIR = ".msseg"
#: Options that change how fast, not what is computed: a rerun with other values is still done.
RESULT_NEUTRAL_OPTIONS = frozenset({"threads", "batch_size", "device", "backend"})


@dataclass(frozen=True)
class State:
    """What to do with one scan before a run: ``new``, ``done``, ``redo`` (our own unfinished or
    failed work, or missing outputs) or ``conflict`` (needs ``--overwrite``), and why."""

    kind: str
    reason: str = ""


def record_path(outdir: Path, name: str) -> Path:
    return outdir / RECORD_DIR / f"{name}.json"


def fingerprint(model: Path, options: dict, soft: bool, masks: tuple[str, ...]) -> dict:
    """Everything that decides a scan's outputs."""
    kept = {k: v for k, v in options.items() if k not in RESULT_NEUTRAL_OPTIONS}
    return {"model": str(model), "options": kept, "soft": soft, "masks": list(masks)}


def read_record(outdir: Path, name: str) -> dict | None:
    try:
        return json.loads(record_path(outdir, name).read_text())
    except (OSError, ValueError):
        return None


def write_record(outdir: Path, name: str, record: dict) -> None:
    io.write_text(json.dumps({**record, "msseg": __version__}, indent=1, default=str),
                  record_path(outdir, name))


def output_sizes(outputs: dict[str, Path]) -> dict[str, int]:
    return {key: path.stat().st_size for key, path in outputs.items()}


def state_of(outdir: Path, name: str, outputs: dict[str, Path], wanted: dict) -> State:
    """Classify a scan before a run (see :class:`State`)."""
    record = read_record(outdir, name)
    present = [p for p in outputs.values() if p.exists()]
    if record is None:
        if present:
            return State("conflict", f"{present[0]} exists and msseg has no record of making it")
        return State("new")
    if record.get("state") != "ok" and not present:
        return State("redo", f"{name}: previous run {record.get('state', 'unfinished')}")
    if record.get("fingerprint") != wanted:
        return State("conflict", f"{name} was made with other settings "
                     f"({describe_change(record.get('fingerprint') or {}, wanted)})")
    if record.get("state") != "ok":
        return State("redo", f"{name}: previous run {record.get('state', 'unfinished')}")
    sizes = record.get("sizes", {})
    for key, path in outputs.items():
        if not path.exists():
            return State("redo", f"{name}: {path.name} is missing")
        if sizes.get(key) != path.stat().st_size:
            return State("conflict", f"{path} was changed after msseg wrote it")
    return State("done")


def describe_change(old: dict, new: dict) -> str:
    """``threshold 0.5 → 0.05, soft False → True``: the settings that differ."""
    changes = []
    flat_old = {**old.get("options", {}), **{k: v for k, v in old.items() if k != "options"}}
    flat_new = {**new.get("options", {}), **{k: v for k, v in new.items() if k != "options"}}
    for key in sorted(set(flat_old) | set(flat_new)):
        if flat_old.get(key) != flat_new.get(key):
            changes.append(f"{key} {flat_old.get(key)} → {flat_new.get(key)}")
    return ", ".join(changes[:4]) + (" …" if len(changes) > 4 else "") or "unknown"


@contextmanager
def scan_lock(outdir: Path, name: str) -> Iterator[bool]:
    """Hold the scan's lock while the block runs; yields False when another process has it."""
    path = outdir / RECORD_DIR / f"{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def folder_lock(outdir: Path) -> Iterator[None]:
    """Exclusive lock on the folder's shared files (``summary.csv``), waiting for it."""
    path = outdir / RECORD_DIR / "folder.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def finished_rows(outdir: Path) -> list[dict]:
    """Summary rows of every finished scan recorded in the folder, sorted by scan name."""
    rows = []
    for path in sorted((outdir / RECORD_DIR).glob("*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if record.get("state") in ("ok", "failed") and isinstance(record.get("row"), dict):
            rows.append(record["row"])
    return sorted(rows, key=lambda r: str(r.get("scan")))


def forget(outdir: Path, name: str) -> None:
    """Remove a scan's record and lock (a refused single scan leaves nothing behind)."""
    for suffix in (".json", ".lock"):
        (outdir / RECORD_DIR / f"{name}{suffix}").unlink(missing_ok=True)


def remove_if_empty(folder: Path) -> None:
    try:
        os.rmdir(folder)
    except OSError:
        pass
