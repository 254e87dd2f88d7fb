"""``msseg evaluate``: MetricsReloaded-exact scores for files, folders or chunk stacks."""

from __future__ import annotations

import argparse
from pathlib import Path

from msseg import io
from msseg.cli.common import check_outputs, print_table
from msseg.errors import MssegError
from msseg.progress import progress

MATCHING_RULES = ("published", "symmetric")   # msseg.evaluation.lesion_matching.MATCHING_RULES


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="score predictions against references",
                       description=__doc__)
    p.add_argument("-p", "--pred", required=True, type=Path, help="prediction file or folder")
    p.add_argument("-r", "--ref", required=True, type=Path, help="reference file or folder")
    p.add_argument("-o", "--output", type=Path, help="metrics CSV, one row per case")
    p.add_argument("--per-lesion", type=Path, help="CSV with one row per lesion")
    p.add_argument("--summary", type=Path, help="CSV of cohort statistics")
    p.add_argument("--overlap", type=float, default=0.1,
                   help="θ: fraction of a lesion that must be overlapped (default 0.1)")
    p.add_argument("--nsd-tolerance-mm", type=float, default=1.0)
    p.add_argument("--connectivity", type=int, choices=(6, 18, 26), default=6)
    p.add_argument("--lesion-matching", choices=MATCHING_RULES, default="published")
    p.add_argument("--label", type=int, help="evaluate voxels equal to this value of a label map")
    p.add_argument("--size-bins-mm3", default="10,50,200",
                   help="edges of the lesion-volume bins for detection rates")
    p.add_argument("--structure", choices=("lesion", "cord"), default="lesion",
                   help="in folders holding both a cord and a lesion mask per case (msseg "
                   "segment's output), which one to score (default lesion)")
    p.add_argument("--stack-by-patient", action="store_true",
                   help="stack _chunk-N files of a patient before scoring")
    p.add_argument("--group-by", metavar="KEY",
                   help="also summarise per group: contrast, site or chunk (from the BIDS "
                   "names), or a column of --groups")
    p.add_argument("--groups", type=Path, metavar="CSV",
                   help="table with a case column and one column per grouping")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.set_defaults(run=run)


def parse_bins(text: str) -> tuple[float, ...]:
    try:
        edges = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError as exc:
        raise MssegError(f"--size-bins-mm3 {text!r}: expected numbers such as 10,50,200") from exc
    if not edges or any(e <= 0 for e in edges) or list(edges) != sorted(set(edges)):
        raise MssegError(f"--size-bins-mm3 {text!r}: expected increasing positive numbers")
    return edges


def options_from_args(args: argparse.Namespace):
    from msseg.evaluation.engine import EvalOptions

    if not 0 < args.overlap <= 1:
        raise MssegError(f"--overlap {args.overlap}: must be in (0, 1]")
    if args.nsd_tolerance_mm < 0:
        raise MssegError(f"--nsd-tolerance-mm {args.nsd_tolerance_mm}: must be ≥ 0")
    return EvalOptions(overlap=args.overlap, nsd_tolerance_mm=args.nsd_tolerance_mm,
                       connectivity=args.connectivity, matching=args.lesion_matching,
                       label=args.label, size_bins_mm3=parse_bins(args.size_bins_mm3))


def run(args: argparse.Namespace) -> int:
    from msseg.evaluation.engine import evaluate_pairs, find_pairs, summarize

    options = options_from_args(args)
    _check_grouping(args)
    outputs = (args.output, args.per_lesion, args.summary)
    inputs = (args.pred, args.ref, *([args.groups] if args.groups is not None else []))
    check_outputs(outputs, args.overwrite, inputs=inputs, suffixes=(".csv",))
    pairs = find_pairs(args.pred, args.ref, args.structure)
    groups = None
    if args.group_by:
        from msseg.evaluation.groups import case_groups

        cases = sorted({p.case for p in pairs})
        groups = case_groups(cases, args.group_by, args.groups)
    result = evaluate_pairs(pairs, options, args.stack_by_patient,
                            wrap=lambda groups: progress(groups, "evaluating"))
    if groups is None:
        summary = summarize(result, options)
    else:
        from msseg.evaluation.groups import summarize_groups

        summary = summarize_groups(result, options, args.group_by, groups)
    io.write_csvs_together([(table, path) for table, path in
                            zip((result.metrics, result.lesions, summary), outputs, strict=True)
                            if path is not None])
    title = f"msseg evaluate: {len(result.metrics)} case(s)"
    if groups is None:
        print_table(_terminal_summary(summary), title)
    else:
        print_table(_group_table(summary), f"{title}, by {args.group_by}")
    return 0


def _check_grouping(args: argparse.Namespace) -> None:
    if args.groups is not None and not args.group_by:
        raise MssegError("--groups needs --group-by COLUMN")
    if args.group_by and args.stack_by_patient:
        raise MssegError("--group-by works on cases; it cannot be combined with "
                         "--stack-by-patient")
    if args.groups is not None:
        io.check_exists(args.groups)


#: Metrics shown per group on screen (every metric is in summary.csv)
GROUP_METRICS = ("dice", "nsd", "lesion_ppv", "lesion_sensitivity", "lesion_f1")


def _group_table(summary):
    """One row per group: number of cases, then mean ± sd of the main metrics."""
    import pandas as pd

    rows = []
    for group, part in summary.groupby("group", sort=False):
        stats = part.set_index("metric")
        row = {"group": group, "n": int(stats.loc["dice", "n"])}
        for metric in GROUP_METRICS:
            m, s = stats.loc[metric, "mean"], stats.loc[metric, "std"]
            row[metric] = f"{m:.3f} ± {s:.2f}" if s == s else f"{m:.3f}"
        rows.append(row)
    return pd.DataFrame(rows)


def _terminal_summary(summary):
    out = summary.copy()
    out["mean ± sd"] = [f"{m:.4g} ± {s:.2g}" if s == s else f"{m:.4g}"
                        for m, s in zip(out["mean"], out["std"], strict=True)]
    return out[["metric", "mean ± sd", "median", "n"]]
