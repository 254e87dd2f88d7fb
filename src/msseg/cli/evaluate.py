"""``msseg evaluate``: MetricsReloaded-exact scores for files, folders or chunk stacks."""

from __future__ import annotations

import argparse
from pathlib import Path

from msseg import io
from msseg.cli.common import check_outputs, print_table, progress
from msseg.errors import MssegError

MATCHING_RULES = ("published", "symmetric")   # msseg.evaluation.lesions.MATCHING_RULES


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
    outputs = (args.output, args.per_lesion, args.summary)
    check_outputs(outputs, args.overwrite, inputs=(args.pred, args.ref), suffixes=(".csv",))
    pairs = find_pairs(args.pred, args.ref, args.structure)
    result = evaluate_pairs(pairs, options, args.stack_by_patient,
                            wrap=lambda groups: progress(groups, "evaluating"))
    summary = summarize(result, options)
    io.write_csvs_together([(table, path) for table, path in
                            zip((result.metrics, result.lesions, summary), outputs, strict=True)
                            if path is not None])
    print_table(_terminal_summary(summary), f"msseg evaluate: {len(result.metrics)} case(s)")
    return 0


def _terminal_summary(summary):
    out = summary.copy()
    out["mean ± sd"] = [f"{m:.4g} ± {s:.2g}" if s == s else f"{m:.4g}"
                        for m, s in zip(out["mean"], out["std"], strict=True)]
    return out[["metric", "mean ± sd", "median", "n"]]
