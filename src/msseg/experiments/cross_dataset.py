"""Cross-dataset generalisation (Badea & Popa): train on each dataset, test on every other.

Design notes: docs/explanation/design-notes.md#mssegexperimentscross_dataset.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from msseg import io
from msseg.data.index import Record, load_index, save_index
from msseg.errors import MssegError
from msseg.evaluation.voxel import dice
from msseg.experiments.engine import Run, Scored, run_design
from msseg.inference.options import SegmentOptions
from msseg.inference.segment import Segmenter
from msseg.progress import progress
from msseg.statistics import COLUMNS, anova_tukey
from msseg.training.config import TrainConfig
from msseg.training.loop import split_records

ABLATABLE = ("normalization", "architecture", "loss", "label_consensus", "augmentation")


@dataclass(frozen=True)
class TrainingSet:
    name: str
    members: tuple[str, ...]


def training_sets(names: Sequence[str], combine: bool) -> list[TrainingSet]:
    sets = [TrainingSet(n, (n,)) for n in names]
    if combine and len(names) > 2:
        sets += [TrainingSet(f"all-but-{n}", tuple(m for m in names if m != n)) for n in names]
    return sets


def iou(pred: np.ndarray, ref: np.ndarray) -> float:
    """|P ∩ R| / |P ∪ R|; 1 when both are empty."""
    union = np.logical_or(pred, ref).sum()
    return 1.0 if union == 0 else float(np.logical_and(pred, ref).sum() / union)


def parse_ablations(items: Sequence[str]) -> dict[str, list[str]]:
    out = {}
    for item in items:
        key, _, values = item.partition("=")
        key = key.strip().replace("-", "_")
        vals = [v.strip() for v in values.split(",") if v.strip()]
        if key not in ABLATABLE or len(vals) < 2:
            raise MssegError(f"--ablation {item!r}: want KEY=a,b with KEY one of "
                             f"{', '.join(ABLATABLE)}")
        out[key] = vals
    return out


def run_experiment(datasets: Mapping[str, str | Path], base: TrainConfig, out: str | Path,
                   combine: bool = False, ablations: Mapping[str, list[str]] | None = None,
                   options: SegmentOptions | None = None, max_test_images: int | None = None,
                   test_only: Mapping[str, str | Path] | None = None
                   ) -> dict[str, pd.DataFrame]:
    """The cross-dataset design on the experiment engine (:mod:`msseg.experiments.engine`)."""
    records = {name: load_index(path) for name, path in datasets.items()}
    tests = {name: load_index(path) for name, path in (test_only or {}).items()}
    if set(tests) & set(records):
        raise MssegError(f"dataset {sorted(set(tests) & set(records))[0]!r} is both a "
                         "training and a test-only dataset")
    if not records or len(records) + len(tests) < 2:
        raise MssegError("cross-dataset needs at least two datasets, one of them to train on "
                         "(--dataset NAME=INDEX; --test NAME=INDEX for test-only ones)")
    design = CrossDataset(records, base, dict(ablations or {}), combine,
                          options or SegmentOptions(crop=False), max_test_images, tests)
    results = run_design(design, out, lambda items, name: progress(items, name))
    return {"per_image": results.pop("results"), **results}


class CrossDataset:
    """Every training set × variant (main, then each ablation value) is a run; its test cases
    are the lesion-bearing images of every dataset it did not train on and, for a single
    dataset, its own held-out split (the diagonal); and every test-only dataset."""

    table = "per_image.csv"

    def __init__(self, records: Mapping[str, list[Record]], base: TrainConfig,
                 ablations: dict[str, list[str]], combine: bool, options: SegmentOptions,
                 max_test_images: int | None,
                 test_only: Mapping[str, list[Record]] | None = None):
        self.records, self.ablations, self.options = records, ablations, options
        self.test_only = dict(test_only or {})
        self.max_test_images = max_test_images
        main_config = base.replace(**{k: v[0] for k, v in ablations.items()})
        main_config.validate()
        self.variants = {"main": main_config}
        for key, values in ablations.items():
            for value in values[1:]:
                self.variants[f"{key}={value}"] = main_config.replace(**{key: value})
                self.variants[f"{key}={value}"].validate()
        self.sets = training_sets(list(records), combine)
        self.tests: dict[str, dict[str, tuple[str, Record]]] = {}
        self._segmenters: dict[str, Segmenter] = {}

    def runs(self, out: Path) -> list[Run]:
        runs = []
        for variant, config in self.variants.items():
            for tset in self.sets:
                name = f"{_slug(variant)}/{tset.name}"
                members = [r for m in tset.members for r in self.records[m]]
                index = save_index(members, out / "runs" / name / "dataset.json")
                config_run = config.replace(dataset=str(index), fold=None)
                self.tests[name] = self._test_cases(tset, members, config_run)
                runs.append(Run(name, config_run, "best",
                                {"variant": variant, "train": tset.name}))
        return runs

    def _test_cases(self, tset: TrainingSet, members: list[Record], config: TrainConfig
                    ) -> dict[str, tuple[str, Record]]:
        tests = {name: recs for name, recs in self.records.items() if name not in tset.members}
        tests.update(self.test_only)
        if len(tset.members) == 1:
            tests[tset.members[0]] = split_records(members, config)[1]   # the diagonal
        cases = {}
        for test_name, recs in tests.items():
            recs = [r for r in recs if r.lesion is not None or r.raters][:self.max_test_images]
            cases.update({r.image: (test_name, r) for r in recs})
        return cases

    def cases(self, run: Run) -> list[str]:
        return list(self.tests[run.name])

    def score(self, run: Run, model, case: str) -> Scored:
        if run.name not in self._segmenters:
            self._segmenters = {run.name: Segmenter(model, self.options)}
        test_name, record = self.tests[run.name][case]
        pred = self._segmenters[run.name].segment(io.load(record.image),
                                                  record.image).lesion.data > 0
        ref = io.load(record.lesion).data > 0 if record.lesion else _consensus(record,
                                                                                run.config)
        return Scored([{"test": test_name, "image": record.image, "dice": dice(pred, ref),
                        "iou": iou(pred, ref)}])

    def summarize(self, per_image: pd.DataFrame, lesions: pd.DataFrame, out: Path
                  ) -> dict[str, pd.DataFrame]:
        results = {}
        main = per_image[per_image.variant == "main"]
        for metric in ("dice", "iou"):
            matrix = main.pivot_table(index="train", columns="test", values=metric,
                                      aggfunc="mean")
            matrix = matrix.reindex(index=[s.name for s in self.sets],
                                    columns=[*self.records, *self.test_only])
            io.write_csv(matrix.reset_index(), out / f"{metric}_matrix.csv")
            results[f"{metric}_matrix"] = matrix
        plot_matrices(results["dice_matrix"], results["iou_matrix"], out / "matrix.png")
        results["anova_tukey"] = _anova(main)
        io.write_csv(results["anova_tukey"], out / "anova_tukey.csv")
        results["ablations"] = _ablations(per_image, self.ablations)
        io.write_csv(results["ablations"], out / "ablations.csv")
        return results


def _consensus(record: Record, config: TrainConfig) -> np.ndarray:
    """Reference of a record that has rater masks only: the consensus the config trains on
    (majority when it trains on plain lesion masks)."""
    from msseg.evaluation import raters

    method = config.label_consensus if config.label_consensus != "none" else "majority"
    return raters.consensus([io.load(p).data > 0 for p in record.raters], method)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)


def _anova(main: pd.DataFrame) -> pd.DataFrame:
    off = main[main.test != main.train]   # out-of-dataset tests only
    groups = {name: g.dice.reset_index(drop=True) for name, g in off.groupby("train")}
    groups = {k: v for k, v in groups.items() if len(v) >= 2}
    if len(groups) < 2:
        return pd.DataFrame(columns=COLUMNS)
    return pd.DataFrame(anova_tukey(groups))


def _ablations(per_image: pd.DataFrame, ablations: Mapping[str, list[str]]) -> pd.DataFrame:
    rows = []
    keyed = per_image.set_index(["train", "test", "image"])
    base = keyed[keyed.variant == "main"].dice
    for key, values in ablations.items():
        for value in values[1:]:
            other = keyed[keyed.variant == f"{key}={value}"].dice
            a, b = base.align(other, join="inner")
            diff = (a - b).to_numpy()
            p = (float(stats.wilcoxon(a, b).pvalue) if len(a) >= 2 and np.any(diff != 0)
                 else float("nan"))
            rows.append({"factor": key, "a": values[0], "b": value, "n": len(a),
                         "mean_dice_a": float(a.mean()), "mean_dice_b": float(b.mean()),
                         "median_difference": float(np.median(diff)) if len(diff) else np.nan,
                         "wilcoxon_p": p})
    return pd.DataFrame(rows, columns=["factor", "a", "b", "n", "mean_dice_a", "mean_dice_b",
                                       "median_difference", "wilcoxon_p"])


def plot_matrices(dice_m: pd.DataFrame, iou_m: pd.DataFrame, png: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(4 + 2.2 * dice_m.shape[1], 1.5 + 0.6 * len(dice_m)))
    for ax, matrix, title in zip(axes, (dice_m, iou_m), ("Dice", "IoU"), strict=True):
        im = ax.imshow(matrix.to_numpy(dtype=float), vmin=0, vmax=1, cmap="viridis")
        ax.set_xticks(range(matrix.shape[1]), matrix.columns, rotation=30, ha="right")
        ax.set_yticks(range(matrix.shape[0]), matrix.index)
        for (i, j), v in np.ndenumerate(matrix.to_numpy(dtype=float)):
            if np.isfinite(v):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center",
                        color="white" if v < 0.5 else "black", fontsize=8)
        ax.set_xlabel("tested on")
        ax.set_ylabel("trained on")
        ax.set_title(f"lesion {title}")
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return png
