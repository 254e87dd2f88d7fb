"""``msseg dataset report``: what a dataset holds, as the multi-contrast paper's figure 1 shows it.

Design notes: docs/explanation/design-notes.md#mssegreportdataset.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

THICK_RATIO = 1.5   # largest / smallest voxel side at or below which a scan counts as 3D
ACQUISITIONS = {"L": "2D sagittal", "R": "2D sagittal", "A": "2D coronal", "P": "2D coronal",
                "S": "2D axial", "I": "2D axial"}
COUNT_COLUMNS = ["site", "acquisition", "contrast", "n_scans", "n_patients"]
LESION_COLUMNS = ["site", "contrast", "image", "lesion_id", "volume_mm3"]


def acquisition_of(orientation: str, spacing: Sequence[float]) -> str:
    """``3D``, ``2D axial``, ``2D sagittal`` or ``2D coronal`` (see the module docstring);
    ``orientation`` is the voxel axes' codes (``LAS``), ``spacing`` their sizes in mm."""
    spacing = np.asarray(spacing, dtype=float)
    if spacing.max() <= THICK_RATIO * spacing.min():
        return "3D"
    return ACQUISITIONS[orientation[int(np.argmax(spacing))]]


def count_table(records) -> pd.DataFrame:
    """Scans and patients per site × acquisition × contrast (largest groups first)."""
    rows = pd.DataFrame([{"site": r.site, "acquisition": acquisition_of(r.orientation, r.spacing),
                          "contrast": r.contrast, "patient": r.patient} for r in records])
    if rows.empty:
        return pd.DataFrame(columns=COUNT_COLUMNS)
    table = rows.groupby(["site", "acquisition", "contrast"]).agg(
        n_scans=("patient", "size"), n_patients=("patient", "nunique")).reset_index()
    return table.sort_values(["n_scans", "site", "acquisition", "contrast"],
                             ascending=[False, True, True, True], ignore_index=True)


def lesion_volumes(records, wrap=lambda items: items) -> pd.DataFrame:
    """One row per lesion of every record that has a lesion mask."""
    from msseg import io
    from msseg.evaluation.lesion_matching import label_lesions

    rows = []
    for record in wrap([r for r in records if r.lesion]):
        mask = io.load(record.lesion)
        labels, n = label_lesions(mask.data > 0, connectivity=26)
        voxels = np.bincount(labels.reshape(-1), minlength=n + 1)[1:]
        rows += [{"site": record.site, "contrast": record.contrast,
                  "image": Path(record.image).name, "lesion_id": i + 1,
                  "volume_mm3": float(v) * mask.voxel_volume_mm3} for i, v in enumerate(voxels)]
    return pd.DataFrame(rows, columns=LESION_COLUMNS)


def plot_lesion_volumes(volumes: pd.DataFrame, path: Path) -> Path:
    """Box plot per site of the lesion volumes (log scale), every lesion drawn over it."""
    plt = _pyplot()
    sites = sorted(volumes["site"].unique()) if len(volumes) else []
    fig, ax = plt.subplots(figsize=(max(6.0, 1.4 * len(sites) + 2), 5))
    if sites:
        data = [volumes.loc[volumes.site == s, "volume_mm3"].to_numpy() for s in sites]
        ax.boxplot(data, showfliers=False)
        rng = np.random.default_rng(0)
        for i, values in enumerate(data, 1):
            ax.scatter(i + rng.uniform(-0.15, 0.15, values.size), values, s=10, alpha=0.5)
        ax.set_xticks(range(1, len(sites) + 1),
                      [f"{s}\n(n = {len(v)})" for s, v in zip(sites, data, strict=True)],
                      fontsize=11)
        ax.set_yscale("log")
    else:
        ax.text(0.5, 0.5, "no lesion mask in this dataset", ha="center", va="center",
                fontsize=14, transform=ax.transAxes)
    ax.set_ylabel("lesion volume (mm³)", fontsize=12)
    ax.set_title("Lesion volumes per site", fontsize=14)
    return _save(fig, path)


def sankey(counts: pd.DataFrame, path: Path,
           levels: Sequence[str] = ("site", "acquisition", "contrast")) -> Path:
    """Alluvial (Sankey) diagram of the scans across ``levels``: a column of nodes per level,
    node heights and band widths proportional to the number of scans."""
    plt = _pyplot()
    total = int(counts["n_scans"].sum())
    fig, ax = plt.subplots(figsize=(13, 7.5))
    if total == 0:
        ax.text(0.5, 0.5, "empty dataset", ha="center", va="center", fontsize=14)
    else:
        nodes = _node_spans(counts, levels, gap=0.03 * total)
        colours = _colours(counts, levels)
        for i in range(len(levels) - 1):
            _draw_bands(ax, counts, levels, i, nodes, colours)
        for (i, name), (y0, y1) in nodes.items():
            ax.add_patch(plt.Rectangle((i - 0.03, y0), 0.06, y1 - y0, color="0.25"))
            side, align = (-0.05, "right") if i == len(levels) - 1 else (0.05, "left")
            ax.text(i + side, (y0 + y1) / 2, f"{name}  ({int(y1 - y0)})", va="center",
                    ha=align, fontsize=12)
        for i, level in enumerate(levels):
            ax.text(i, -0.05 * total, level, ha="center", va="top", fontsize=14,
                    fontweight="bold")
        ax.set_xlim(-0.4, len(levels) - 0.6)
        ax.set_ylim(-0.12 * total, max(y1 for _, y1 in nodes.values()) * 1.02)
        ax.invert_yaxis()
    ax.axis("off")
    ax.set_title(f"{total} scans: " + " → ".join(levels), fontsize=15)
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    """PNG at 120 dpi, written atomically."""
    from msseg import io

    fig.tight_layout()
    return io.write_png(fig, path)


def _node_spans(counts, levels, gap: float) -> dict[tuple[int, str], tuple[float, float]]:
    spans = {}
    for i, level in enumerate(levels):
        sizes = counts.groupby(level)["n_scans"].sum().sort_values(ascending=False)
        y = 0.0
        for name, n in sizes.items():
            spans[(i, str(name))] = (y, y + float(n))
            y += float(n) + gap
    return spans


def _colours(counts, levels) -> dict[tuple[int, str], tuple]:
    import matplotlib

    out = {}
    for i, palette in ((0, "tab10"), (len(levels) - 1, "Dark2")):   # sites, contrasts
        colours = matplotlib.colormaps[palette]
        for k, name in enumerate(sorted(counts[levels[i]].astype(str).unique())):
            out[(i, name)] = colours(k % colours.N)
    return out


def _draw_bands(ax, counts, levels, i, nodes, colours) -> None:
    """The bands between column ``i`` and ``i + 1``, stacked inside each node in the order of
    the other end's position (so bands do not cross inside a node)."""
    a, b = levels[i], levels[i + 1]
    flows = counts.groupby([a, b])["n_scans"].sum()
    flows = [(str(s), str(t), float(n)) for (s, t), n in flows.items() if n > 0]
    out_at = {name: y0 for (lvl, name), (y0, _) in nodes.items() if lvl == i}
    in_at = {name: y0 for (lvl, name), (y0, _) in nodes.items() if lvl == i + 1}
    x = np.linspace(i + 0.03, i + 0.97, 60)
    ease = (lambda t: 3 * t ** 2 - 2 * t ** 3)((x - x[0]) / (x[-1] - x[0]))
    by_target = sorted(flows, key=lambda f: (nodes[(i + 1, f[1])][0], nodes[(i, f[0])][0]))
    starts = {}
    for s, t, n in sorted(flows, key=lambda f: (nodes[(i, f[0])][0], nodes[(i + 1, f[1])][0])):
        starts[(s, t)] = out_at[s]
        out_at[s] += n
    for s, t, n in by_target:
        end = in_at[t]
        in_at[t] += n
        lower = starts[(s, t)] + (end - starts[(s, t)]) * ease
        colour = colours.get((i, s)) if i == 0 else colours.get((i + 1, t))
        ax.fill_between(x, lower, lower + n, color=colour, alpha=0.45, linewidth=0)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
