"""Compare the lesion_ms regimes with the existing msseg models on the held-out data.

Every model runs through `msseg segment`'s pipeline (msseg.experiments.holdout) on fold 0 of
work/lesion_ms/dataset.json: the real held-out scans as acquired (cord Dice; volume-wise
specificity: no lesion predicted), the same scans with lesions synthesised with their contrast's
appearance, and held-out synthetic PSIR / STIR / UNIT1 spines with lesions (lesion Dice, lesion
PPV, sensitivity and F1, published matching rule, θ = 0.1). Models: the three regimes at the
end of their common budget (work/lesion_ms/{baseline,sampling,finetune}/checkpoint_last.pt: the
held-out data is what is reported, so it picks no epoch) and the bundled
lesion_ms_axial_t2 and lesion_2stage. Paired Wilcoxon (Holm) between the regimes on lesion Dice
per image.

Usage: .venv/bin/python recipes/lesion_ms/compare.py [--work work/lesion_ms]
Writes WORK/comparison.csv (one row per image × model), WORK/comparison.md (the tables); each
model's rows are cached in WORK/scores/ while newer than its weights.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from msseg.experiments.holdout import comparison_tables, evaluate_holdout
from msseg.models.registry import find_model
from msseg.training.config import TrainConfig
from msseg.training.package import package_checkpoint

REGIMES = ("baseline", "sampling", "finetune")
EXISTING = ("lesion_ms_axial_t2", "lesion_2stage")


def finished(run: Path) -> bool:
    """Whether a training run reached the end of its budget (every epoch in its log)."""
    if not (run / "checkpoint_last.pt").is_file() or not (run / "log.csv").is_file():
        return False
    return len(pd.read_csv(run / "log.csv")) >= TrainConfig.from_yaml(run / "config.yaml").epochs


def evaluate_all(work: Path) -> pd.DataFrame:
    """Every model's rows; a model's rows are kept in WORK/scores/<model>.csv and reused while
    newer than its checkpoint (a regime still training is skipped, with a note)."""
    tables = []
    for name in (*REGIMES, *EXISTING):
        checkpoint = work / name / "checkpoint_last.pt"
        if name in REGIMES and not finished(work / name):
            print(f"{name}: not trained to the end of its budget yet, skipped", flush=True)
            continue
        cached = work / "scores" / f"{name}.csv"
        source = checkpoint if name in REGIMES else find_model(name).path / "model.pt"
        if cached.is_file() and cached.stat().st_mtime > source.stat().st_mtime:
            table = pd.read_csv(cached)
        else:
            model = (package_checkpoint(checkpoint, work / "models" / name,
                                        f"# lesion_ms {name}\n") if name in REGIMES
                     else find_model(name))
            table = evaluate_holdout(model, work / "dataset.json")
            cached.parent.mkdir(parents=True, exist_ok=True)
            table.to_csv(cached, index=False)
        tables.append(table.assign(model=name))
        print(f"{name}: {len(table)} images", flush=True)
    return pd.concat(tables, ignore_index=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("work/lesion_ms"))
    args = parser.parse_args()
    rows = evaluate_all(args.work)
    rows.to_csv(args.work / "comparison.csv", index=False)
    text = comparison_tables(rows, REGIMES, EXISTING)
    (args.work / "comparison.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
