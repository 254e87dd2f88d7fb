"""Figures of cord morphometry: CSA per level across the scans of a cohort."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from msseg import io


def csa_per_level(table: pd.DataFrame, path: Path) -> Path:
    """CSA (``mean_area``, mm²) per level, superior levels on the left: one thin line per scan
    and the cohort's mean ± standard deviation in bold (``table``: the per-level rows of
    ``msseg morphometry --per-level``, with ``scan``, ``level`` and the level number)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by = "spinal_level" if "spinal_level" in table.columns else "vert_level"
    order = (table[[by, "level"]].drop_duplicates().sort_values(by)["level"].tolist()
             if len(table) else [])
    position = {name: i for i, name in enumerate(order)}
    fig, ax = plt.subplots(figsize=(max(6.0, 0.7 * len(order) + 3), 4.8))
    for scan, rows in table.groupby("scan", sort=True):
        rows = rows.sort_values(by)
        ax.plot([position[v] for v in rows["level"]], rows["mean_area"], marker="o", lw=1,
                ms=4, alpha=0.6, label=Path(str(scan)).name)
    if order:
        cohort = table.groupby("level")["mean_area"].agg(["mean", "std"]).reindex(order)
        x = np.arange(len(order))
        ax.errorbar(x, cohort["mean"], yerr=cohort["std"].fillna(0), color="black", lw=2.5,
                    capsize=5, label="cohort mean ± SD", zorder=5)
    ax.set_xticks(range(len(order)), order, fontsize=12)
    ax.set_xlabel("spinal level" if by == "spinal_level" else "vertebral level", fontsize=13)
    ax.set_ylabel("cord CSA (mm²)", fontsize=13)
    ax.tick_params(axis="y", labelsize=12)
    ax.grid(alpha=0.3)
    if table["scan"].nunique() <= 12:
        ax.legend(fontsize=10, loc="best")
    fig.tight_layout()
    return io.write_png(fig, path)
