"""``msseg experiment cross-dataset``: train on each dataset, test on every other.

``--dataset NAME=INDEX`` (two or more; indexes from ``msseg dataset scan``), a base training
config (YAML, fields of TrainConfig; its ``dataset``/``output`` are set per run), ``--combine``
to also train on the union of all datasets but one, ``--ablation KEY=a,b`` (KEY one of
normalization, architecture, loss, label_consensus, augmentation; the first value is used for
the main matrix). Writes per_image.csv, dice_matrix.csv, iou_matrix.csv, matrix.png,
anova_tukey.csv and ablations.csv into OUT (see msseg.experiments.cross_dataset). Runs that
already have a model are reused, so a killed experiment resumes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from msseg.cli.common import print_table
from msseg.errors import MssegError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("experiment", help="multi-model experiments (cross-dataset)",
                       description=__doc__)
    kinds = p.add_subparsers(dest="kind", required=True, metavar="KIND")
    c = kinds.add_parser("cross-dataset", help="train on each dataset, test on the others",
                         description=__doc__)
    c.add_argument("config", type=Path, help="base training config (YAML)")
    c.add_argument("--dataset", action="append", required=True, metavar="NAME=INDEX")
    c.add_argument("-o", "--outdir", type=Path, required=True)
    c.add_argument("--combine", action="store_true",
                   help="also train on the union of all datasets but one")
    c.add_argument("--ablation", action="append", default=[], metavar="KEY=a,b")
    c.add_argument("--max-test-images", type=int,
                   help="test on at most this many images per dataset (CPU budget)")
    c.add_argument("--label-consensus", choices=("none", "union", "majority", "staple"))
    c.set_defaults(run=run)


def parse_datasets(items: list[str]) -> dict[str, Path]:
    out = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise MssegError(f"--dataset {item!r}: want NAME=INDEX.json")
        if name in out:
            raise MssegError(f"--dataset {name!r} given twice")
        out[name] = Path(path)
    return out


def run(args: argparse.Namespace) -> int:
    from msseg.experiments.cross_dataset import parse_ablations, run_experiment
    from msseg.training.config import TrainConfig

    base = TrainConfig.from_yaml(args.config)
    if args.label_consensus:
        base = base.replace(label_consensus=args.label_consensus)
    results = run_experiment(parse_datasets(args.dataset), base, args.outdir, args.combine,
                             parse_ablations(args.ablation),
                             max_test_images=args.max_test_images)
    for name in ("dice_matrix", "iou_matrix"):
        print_table(results[name].round(3).reset_index(), name.replace("_", " "))
    if len(results["ablations"]):
        print_table(results["ablations"], "ablations (paired Wilcoxon)")
    print(f"results in {args.outdir}")
    return 0
