"""``msseg stats``: compare a metric between methods (one metrics CSV per method)."""

from __future__ import annotations

import argparse
from pathlib import Path

from msseg.cli.common import check_outputs, print_table


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stats", help="statistical tests between methods", description=__doc__)
    p.add_argument("csv", nargs="+", type=Path, help="metrics CSVs from msseg evaluate")
    p.add_argument("--metric", default="dice", help="column to compare (default dice)")
    p.add_argument("--paired", action="store_true",
                   help="cases are paired across files: add Wilcoxon signed-rank tests")
    p.add_argument("-o", "--output", type=Path, help="CSV of test results")
    p.add_argument("--plot", type=Path, help="raincloud plot PNG")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from msseg import io
    from msseg.statistics import compare, load_groups, raincloud

    check_outputs((args.output, args.plot), args.overwrite)
    groups = load_groups(args.csv, args.metric)
    table = compare(groups, paired=args.paired)
    if args.output is not None:
        io.write_csv(table, args.output)
    if args.plot is not None:
        raincloud(groups, args.metric, args.plot)
    print_table(table, f"msseg stats: {args.metric}")
    return 0
