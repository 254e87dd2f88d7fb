"""Per-group summaries of ``msseg evaluate``: by contrast, site, chunk or any column of a table.

A case's group comes from ``--groups groups.csv`` (a ``case`` column and one column per grouping,
e.g. ``case,contrast,site``) when given, else from its BIDS name: ``contrast`` from the suffix
(``sub-unf01_T2star`` -> T2starw, as :func:`msseg.bids.contrast_of`), ``site`` from the
letters of the subject label (``sub-unf01`` -> unf), ``chunk`` from the ``chunk-N`` entity
(``chunk-2``; ``none`` without one). Each group gets the cohort summary of
:func:`msseg.evaluation.engine.summarize` (mean, sd, median, n per metric, volume-wise
specificity, detection rates) computed on its own cases only.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from msseg.errors import MssegError

GROUP_KEYS = ("contrast", "site", "chunk")


def case_groups(cases: list[str], by: str, table: Path | None = None) -> dict[str, str]:
    """The group of every case: from ``table``'s column ``by``, else from the case names."""
    if table is not None:
        return _from_table(cases, by, table)
    if by not in GROUP_KEYS:
        raise MssegError(f"--group-by {by!r}: one of {', '.join(GROUP_KEYS)} (or a column of "
                         "--groups)")
    return {case: _from_name(case, by) for case in cases}


def _from_name(case: str, by: str) -> str:
    from msseg.bids import contrast_of, site_of
    from msseg.evaluation.stacking import split_chunk

    if by == "contrast":
        return contrast_of(case)
    if by == "site":
        site = site_of(case)
        if not site:
            raise MssegError(f"case {case}: no site in its name (the letters of a sub- label); "
                             "give --groups groups.csv with a site column")
        return site
    chunk = split_chunk(case)[1]
    return "none" if chunk is None else f"chunk-{chunk}"


def _from_table(cases: list[str], by: str, path: Path) -> dict[str, str]:
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as exc:
        raise MssegError(f"{path}: cannot read the groups table ({exc})") from exc
    if "case" not in table.columns or by not in table.columns:
        raise MssegError(f"{path}: needs the columns case and {by} (has "
                         f"{', '.join(table.columns)})")
    if table["case"].duplicated().any():
        twice = ", ".join(sorted(set(table["case"][table["case"].duplicated()])))
        raise MssegError(f"{path}: cases listed twice: {twice}")
    mapping = dict(zip(table["case"], table[by], strict=True))
    missing = sorted(set(cases) - set(mapping))
    if missing:
        raise MssegError(f"{path}: no {by} for {', '.join(missing[:5])}"
                         f"{' …' if len(missing) > 5 else ''}")
    return {case: mapping[case] for case in cases}


def summarize_groups(result, options, by: str, groups: dict[str, str]) -> pd.DataFrame:
    """The cohort summary of every case (``group`` = ``all``) and of each group, one table:
    columns ``group_by, group`` then those of :func:`~msseg.evaluation.engine.summarize`."""
    from msseg.evaluation.engine import EvalResult, summarize

    parts = [summarize(result, options).assign(group="all")]
    for name in sorted(set(groups.values())):
        members = {case for case, g in groups.items() if g == name}
        subset = EvalResult(result.metrics[result.metrics["case"].isin(members)],
                            result.lesions[result.lesions["case"].isin(members)])
        parts.append(summarize(subset, options).assign(group=name))
    table = pd.concat(parts, ignore_index=True)
    table.insert(0, "group_by", by)
    return table[["group_by", "group", *[c for c in table.columns
                                          if c not in ("group_by", "group")]]]
