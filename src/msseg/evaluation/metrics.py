"""The registry of the metrics ``msseg evaluate`` writes: one entry per CSV column, with its
formula, reference and empty rule. The column order of the metrics CSV and the documentation's
metric page are both generated from :data:`REGISTRY`, so they cannot drift apart."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    """One column of the metrics CSV: what it measures, how, after whom, and its empty rule."""

    name: str
    kind: str          # voxel | surface | volume | lesion
    formula: str
    reference: str
    empty: str


_LESION_RULE = ("published rule (default): both empty → 1; reference empty, prediction not → "
                "PPV 0, F1 0, sensitivity 1; prediction empty, reference not → 0. symmetric "
                "rule: see `msseg.evaluation.lesion_matching`")
REGISTRY: tuple[Metric, ...] = (
    Metric("dice", "voxel", "DSC = 2|P ∩ R| / (|P| + |R|)",
           "Dice 1945; MetricsReloaded `dsc`", "both empty → 1; exactly one empty → 0"),
    Metric("nsd", "surface",
           "NSD = (|{p ∈ S_P : d(p, S_R) ≤ τ}| + |{r ∈ S_R : d(r, S_P) ≤ τ}|) / (|S_P| + |S_R|), "
           "τ = `--nsd-tolerance-mm` (1 mm)",
           "Nikolov et al., JMIR 2021; MetricsReloaded `nsd`",
           "both empty → 1; exactly one empty → 0"),
    Metric("rve", "volume", "RVE = (|P| − |R|) / |R|", "MetricsReloaded `rel_vol_error`",
           "both empty → 0; reference empty, prediction not → NaN"),
    Metric("hd95_mm", "surface",
           "HD95 = max(P95{d(p, S_R) : p ∈ S_P}, P95{d(r, S_P) : r ∈ S_R}) in mm",
           "MetricsReloaded `hd_perc`", "NaN when either mask is empty"),
    Metric("assd_mm", "surface",
           "ASSD = (Σ_{p ∈ S_P} d(p, S_R) + Σ_{r ∈ S_R} d(r, S_P)) / (|S_P| + |S_R|) in mm",
           "MetricsReloaded `assd`", "NaN when either mask is empty"),
    Metric("ref_volume_mm3", "volume", "|R| × voxel volume", "—", "0 when empty"),
    Metric("pred_volume_mm3", "volume", "|P| × voxel volume", "—", "0 when empty"),
    Metric("lesion_ppv", "lesion", "PPV = TP / (TP + FP)",
           "ivadomed fork of MetricsReloaded (the spinal cord MS papers)", _LESION_RULE),
    Metric("lesion_sensitivity", "lesion", "sensitivity = TP / (TP + FN)",
           "ivadomed fork of MetricsReloaded", _LESION_RULE),
    Metric("lesion_f1", "lesion", "F1 = 2TP / (2TP + FP + FN)",
           "ivadomed fork of MetricsReloaded", _LESION_RULE),
    Metric("n_ref_lesions", "lesion", "connected components of R (`--connectivity`, 6)",
           "—", "0 when empty"),
    Metric("n_pred_lesions", "lesion", "connected components of P", "—", "0 when empty"),
    Metric("lesion_count_abs_diff", "lesion", "|n_pred_lesions − n_ref_lesions|", "—",
           "0 when both are empty"),
    Metric("lesion_tp", "lesion",
           "reference lesions r with |r ∩ P| / |r| ≥ θ (`--overlap`, 0.1)",
           "ivadomed fork of MetricsReloaded", "0 when the reference is empty"),
    Metric("lesion_fp", "lesion", "predicted components p with |p ∩ R| = 0",
           "ivadomed fork of MetricsReloaded", "0 when the prediction is empty"),
    Metric("lesion_fn", "lesion", "reference lesions that are not true positives",
           "ivadomed fork of MetricsReloaded", "0 when the reference is empty"),
)

COLUMNS: tuple[str, ...] = tuple(m.name for m in REGISTRY)


def markdown_table() -> str:
    """The registry as a Markdown table (the documentation's metric page)."""
    lines = ["| column | kind | formula | reference | empty rule |", "|---|---|---|---|---|"]
    def cell(text: str) -> str:
        return text.replace("|", "\\|")        # |P ∩ R| inside a table cell

    for m in REGISTRY:
        lines.append(f"| `{m.name}` | {m.kind} | {cell(m.formula)} | {cell(m.reference)} | "
                     f"{cell(m.empty)} |")
    return "\n".join(lines) + "\n"
