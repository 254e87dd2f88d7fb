"""Statistical comparison of methods, as in the papers' results sections.

Design notes: docs/explanation/design-notes.md#mssegstatistics.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
import scikit_posthocs as sp
from scipy import stats
from statsmodels.stats.multitest import multipletests

from msseg import io
from msseg.errors import MssegError

COLUMNS = ["test", "group_a", "group_b", "statistic", "p_value", "p_adjusted", "n"]


def load_groups(paths: list[Path], metric: str) -> dict[str, pd.Series]:
    """One series per CSV (named by file stem), indexed by ``case`` when that column exists."""
    groups: dict[str, pd.Series] = {}
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise MssegError(f"{path}: no such file")
        try:
            table = pd.read_csv(path)
        except Exception as exc:
            raise MssegError(f"{path}: cannot read CSV ({exc})") from exc
        if metric not in table.columns:
            raise MssegError(f"{path}: no column {metric!r} (columns: {', '.join(table.columns)})")
        index = table["case"].astype(str) if "case" in table.columns else table.index
        values = pd.to_numeric(table[metric], errors="coerce")
        name = path.name.removesuffix(".csv")
        if name in groups:
            name = str(path)
        groups[name] = pd.Series(values.to_numpy(), index=index, name=name).dropna()
    if len(groups) < 2:
        raise MssegError("give at least two CSV files to compare")
    return groups


def normality(groups: Mapping[str, pd.Series]) -> list[dict]:
    rows = []
    for name, values in groups.items():
        if values.size >= 8:
            stat, p = stats.normaltest(values.to_numpy())
        else:
            stat, p = np.nan, np.nan
        rows.append(_row("normality_dagostino_pearson", name, None, stat, p, np.nan, values.size))
    return rows


def kruskal_dunn(groups: Mapping[str, pd.Series]) -> list[dict]:
    names = list(groups)
    arrays = [groups[n].to_numpy() for n in names]
    stat, p = stats.kruskal(*arrays)
    rows = [_row("kruskal_wallis", None, None, stat, p, np.nan, sum(a.size for a in arrays))]
    dunn = sp.posthoc_dunn(arrays, p_adjust="holm")
    raw = sp.posthoc_dunn(arrays)
    for i, j in combinations(range(len(names)), 2):
        rows.append(_row("dunn_holm", names[i], names[j], np.nan, raw.iloc[i, j],
                         dunn.iloc[i, j], arrays[i].size + arrays[j].size))
    return rows


def wilcoxon_paired(groups: Mapping[str, pd.Series]) -> list[dict]:
    rows = []
    for a, b in combinations(list(groups), 2):
        common = groups[a].index.intersection(groups[b].index)
        x, y = groups[a].loc[common].to_numpy(), groups[b].loc[common].to_numpy()
        if common.size == 0 or np.allclose(x, y):
            stat, p = np.nan, 1.0 if common.size else np.nan
        else:
            stat, p = stats.wilcoxon(x, y)
        rows.append(_row("wilcoxon_signed_rank", a, b, stat, p, np.nan, common.size))
    return holm(rows)


def holm(rows: list[dict]) -> list[dict]:
    """Fill ``p_adjusted`` of the rows with a p-value: Holm's correction across them."""
    pvals = np.array([r["p_value"] for r in rows], dtype=float)
    ok = ~np.isnan(pvals)
    if ok.any():
        adjusted = multipletests(pvals[ok], method="holm")[1]
        for row, adj in zip((r for r, k in zip(rows, ok, strict=True) if k), adjusted,
                            strict=True):
            row["p_adjusted"] = float(adj)
    return rows


def anova_tukey(groups: Mapping[str, pd.Series]) -> list[dict]:
    names = list(groups)
    arrays = [groups[n].to_numpy() for n in names]
    stat, p = stats.f_oneway(*arrays)
    rows = [_row("anova_oneway", None, None, stat, p, np.nan, sum(a.size for a in arrays))]
    tukey = stats.tukey_hsd(*arrays)
    for i, j in combinations(range(len(names)), 2):
        rows.append(_row("tukey_hsd", names[i], names[j], tukey.statistic[i, j],
                         tukey.pvalue[i, j], tukey.pvalue[i, j], arrays[i].size + arrays[j].size))
    return rows


def compare(groups: Mapping[str, pd.Series], paired: bool = False) -> pd.DataFrame:
    """Every test between methods in one tidy table: normality, Kruskal–Wallis and Dunn
    (Holm-corrected), one-way ANOVA and Tukey, and with ``paired`` Wilcoxon signed-rank tests.

    Args:
        groups: one series of a metric per method, indexed by case.
        paired: the cases are the same across methods.

    Returns:
        One row per test.
    """
    rows = normality(groups) + kruskal_dunn(groups)
    if paired:
        rows += wilcoxon_paired(groups)
    rows += anova_tukey(groups)
    return pd.DataFrame(rows, columns=COLUMNS)


def _row(test, a, b, stat, p, p_adj, n) -> dict:
    return {"test": test, "group_a": a, "group_b": b, "statistic": float(stat),
            "p_value": float(p), "p_adjusted": float(p_adj), "n": int(n)}


def raincloud(groups: Mapping[str, pd.Series], metric: str, path: Path) -> Path:
    """Raincloud plot: half violin (density), box plot and jittered points per group."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(groups)
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(names), 4.5))
    rng = np.random.default_rng(0)
    for i, name in enumerate(names):
        values = groups[name].to_numpy()
        colour = f"C{i}"
        if values.size > 1 and np.ptp(values) > 0:
            body = ax.violinplot(values, positions=[i], widths=0.8, showextrema=False)["bodies"][0]
            verts = body.get_paths()[0].vertices
            verts[:, 0] = np.maximum(verts[:, 0], i)  # keep the right half
            body.set_facecolor(colour)
            body.set_alpha(0.4)
        ax.boxplot(values, positions=[i - 0.12], widths=0.12, showfliers=False,
                   patch_artist=True, boxprops={"facecolor": "white"})
        jitter = rng.uniform(-0.08, 0.08, values.size)
        ax.scatter(np.full(values.size, i - 0.3) + jitter, values, s=10, color=colour, alpha=0.7)
    ax.set_xticks(range(len(names)), names, rotation=20, ha="right")
    ax.set_ylabel(metric)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return io.write_png(fig, path)
