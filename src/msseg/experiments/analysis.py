"""Tables, statistics and plots of the preprocessing design (the axial-T2w paper's results).

Design notes: docs/explanation/design-notes.md#mssegexperimentsanalysis.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from msseg import io
from msseg.evaluation.lesion_matching import size_bin_index, size_bin_labels
from msseg.experiments.holdout import markdown_table
from msseg.statistics import COLUMNS, holm, kruskal_dunn, normality, raincloud, wilcoxon_paired

TABLE_METRICS = ("dice", "nsd", "lesion_ppv", "lesion_f1", "count_error", "cord_dice")
CHUNK_NAMES = {1: "cervical", 2: "thoracic", 3: "lumbar"}
VOLUME_BINS_MM3 = (10.0, 50.0, 200.0)


def model_name(variant: str, dims, context: str = "patch") -> str:
    return f"{variant} {int(dims)}D" + (" whole-context" if context == "whole" else "")


def with_model(table: pd.DataFrame) -> pd.DataFrame:
    context = table.context if "context" in table.columns else ["patch"] * len(table)
    return table.assign(name=[model_name(v, d, c) for v, d, c in zip(
        table.variant, table.dims, context, strict=True)])


def cross_validated(table: pd.DataFrame) -> pd.Series:
    """Rows of the fold models on their own folds (not the test-site ensembles/baseline)."""
    if "fold" not in table.columns:
        return pd.Series(True, index=table.index)
    return ~table.fold.astype(str).isin(["ensemble", "test"])


def generalisation(results: pd.DataFrame) -> pd.DataFrame:
    """Per test site and model (fold ensembles, baseline): mean of the paper's metrics on the
    stacked-chunk references, and the number of sessions (the axial-T2w paper's table 2)."""
    rows = results[~cross_validated(results) & (results.reference == "chunks")]
    if not len(rows):
        return pd.DataFrame(columns=["site", "model", "n", *TABLE_METRICS])
    means = with_model(rows).groupby(["site", "name"], sort=False)[list(TABLE_METRICS)].mean()
    counts = with_model(rows).groupby(["site", "name"], sort=False).size().rename("n")
    out = means.join(counts).reset_index().rename(columns={"name": "model"})
    return out[["site", "model", "n", *TABLE_METRICS]].round(3)


def paper_table(results: pd.DataFrame) -> pd.DataFrame:
    """Mean ± sd of the paper's metrics per model and reference (rows in model order)."""
    rows = []
    for (reference, name), group in with_model(results).groupby(["reference", "name"],
                                                                 sort=False):
        row = {"reference": reference, "model": name, "n": len(group)}
        for metric in TABLE_METRICS:
            values = pd.to_numeric(group[metric], errors="coerce").dropna()
            row[metric] = (f"{values.mean():.3f} ± {values.std(ddof=1):.3f}"
                           if len(values) > 1 else f"{values.mean():.3f}")
        rows.append(row)
    return pd.DataFrame(rows, columns=["reference", "model", "n", *TABLE_METRICS])


def statistics(results: pd.DataFrame) -> pd.DataFrame:
    """The paper's tests per metric on the stacked-chunk references (see module)."""
    chunks = with_model(results[results.reference == "chunks"])
    rows = []
    for metric in TABLE_METRICS:
        groups = {name: pd.Series(pd.to_numeric(g[metric], errors="coerce").to_numpy(),
                                  index=g.case.astype(str)).dropna()
                  for name, g in chunks.groupby("name", sort=False)}
        found = [dict(r, metric=metric) for r in normality(groups)]
        if len(groups) > 1 and sum(len(v) for v in groups.values()) > len(groups):
            found += [dict(r, metric=metric) for r in kruskal_dunn(groups)]
        pairs = []
        for variant in dict.fromkeys(chunks.variant):
            two, three = (groups.get(model_name(variant, d)) for d in (2, 3))
            if two is not None and three is not None:
                pairs += wilcoxon_paired({model_name(variant, 2): two,
                                          model_name(variant, 3): three})
        found += [dict(r, metric=metric) for r in holm(pairs)]
        rows += found
    return pd.DataFrame(rows, columns=["metric", *COLUMNS])


def detection(lesions: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Detection rate of reference lesions per model by chunk and by volume bin, and the
    reference lesion counts per session and chunk (stacked-chunk references)."""
    ref = lesions[(lesions.kind == "ref") & (lesions.reference == "chunks")]
    ref = with_model(ref) if len(ref) else ref.assign(name=[])
    ref = ref.assign(region=ref.chunk.map(lambda c: CHUNK_NAMES.get(int(c), f"chunk {int(c)}")
                                          if pd.notna(c) else "unknown"),
                     volume_bin=[size_bin_labels(VOLUME_BINS_MM3)[i] for i in size_bin_index(
                         ref.volume_mm3.to_numpy(float), VOLUME_BINS_MM3)])
    hit = ref.true_positive.astype(bool)
    by_chunk = (ref.assign(hit=hit).groupby(["name", "region"], sort=False)
                .hit.agg(["mean", "size"]).reset_index()
                .rename(columns={"name": "model", "mean": "detection_rate", "size": "n"}))
    by_volume = (ref.assign(hit=hit).groupby(["name", "volume_bin"], sort=False)
                 .hit.agg(["mean", "size"]).reset_index()
                 .rename(columns={"name": "model", "mean": "detection_rate", "size": "n"}))
    first = ref[ref.name == ref.name.iloc[0]] if len(ref) else ref   # counts: one model's view
    counts = (first.groupby(["case", "region"]).size().rename("n_lesions").reset_index()
              if len(first) else pd.DataFrame(columns=["case", "region", "n_lesions"]))
    return by_chunk, by_volume, counts


def plot_detection(by_chunk: pd.DataFrame, by_volume: pd.DataFrame, counts: pd.DataFrame,
                   path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    orders = {"region": list(CHUNK_NAMES.values()),
              "volume_bin": size_bin_labels(VOLUME_BINS_MM3)}
    for ax, table, column, title in ((axes[0], by_chunk, "region", "by chunk"),
                                     (axes[1], by_volume, "volume_bin",
                                      "by reference lesion volume (mm³)")):
        pivot = table.pivot_table(index=column, columns="model", values="detection_rate",
                                  sort=False)
        pivot = pivot.reindex([k for k in orders[column] if k in pivot.index])
        if len(pivot):
            pivot.plot.bar(ax=ax, rot=0, width=0.8, legend=ax is axes[0])
        ax.set_ylim(0, 1)
        ax.set_ylabel("lesions detected (share of reference lesions)")
        ax.set_title(f"Detection rate {title}")
        ax.set_xlabel("")
        ax.grid(axis="y", alpha=0.3)
    if len(axes[0].get_legend_handles_labels()[0]):
        axes[0].legend(fontsize=7, loc="lower left")
    regions = [r for r in CHUNK_NAMES.values() if r in set(counts.region)]
    data = [counts[counts.region == r].n_lesions.to_numpy() for r in regions]
    if data:
        top = max(int(max((d.max() for d in data if d.size), default=0)), 1)
        axes[2].hist(data, bins=np.arange(top + 2) - 0.5, label=regions)
        axes[2].legend()
    axes[2].yaxis.get_major_locator().set_params(integer=True)
    axes[2].set_xlabel("reference lesions per session and chunk")
    axes[2].set_ylabel("sessions")
    axes[2].set_title("Lesion count distribution per region")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def summarize(results: pd.DataFrame, lesions: pd.DataFrame, out: Path
              ) -> dict[str, pd.DataFrame]:
    """Write every table and plot of the module docstring into ``out``."""
    general = generalisation(results)
    if len(general):
        io.write_csv(general, out / "generalisation.csv")
    results = results[cross_validated(results)]
    if len(lesions):
        lesions = lesions[cross_validated(lesions)]
    table = paper_table(results)
    io.write_csv(table, out / "table.csv")
    io.replace_atomically(out / "table.md",
                          lambda tmp: Path(tmp).write_text(markdown_table(table) + "\n"))
    stats = statistics(results)
    io.write_csv(stats, out / "statistics.csv")
    chunks = with_model(results[results.reference == "chunks"])
    for metric in TABLE_METRICS:
        groups = {name: pd.to_numeric(g[metric], errors="coerce").dropna()
                  for name, g in chunks.groupby("name", sort=False)}
        if any(len(v) for v in groups.values()):
            raincloud(groups, metric, out / f"raincloud_{metric}.png")
    by_chunk, by_volume, counts = detection(lesions if len(lesions) else pd.DataFrame(
        columns=["kind", "reference", "variant", "dims", "chunk", "volume_mm3",
                 "true_positive", "case"]))
    io.write_csvs_together([(by_chunk, out / "detection_by_chunk.csv"),
                            (by_volume, out / "detection_by_volume.csv"),
                            (counts, out / "lesion_counts.csv")])
    plot_detection(by_chunk, by_volume, counts, out / "detection.png")
    return {"table": table, "statistics": stats, "detection_by_chunk": by_chunk,
            "detection_by_volume": by_volume, "lesion_counts": counts,
            "generalisation": general}
