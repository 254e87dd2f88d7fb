"""``msseg dataset``: index a dataset, split it by patient, report what it holds, export it to
nnU-Net, or make the semi-synthetic chunked whole-spine cohort (``synth-chunks``)."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from msseg.cli.common import check_outputs


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dataset", help="index, split and export datasets", description=__doc__)
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    s = actions.add_parser("scan", help="index a BIDS tree or a plain folder")
    s.add_argument("root", type=Path)
    s.add_argument("-o", "--output", type=Path, required=True, help="dataset index (JSON)")
    s.add_argument("--folds", type=int, default=5, help="patient-level folds (default 5)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--overwrite", action="store_true")
    s.set_defaults(run=run_scan)
    r = actions.add_parser("report", help="counts per site × acquisition × contrast, lesion "
                           "volumes per site and a Sankey diagram of the dataset")
    r.add_argument("index", type=Path, help="dataset index from `msseg dataset scan`")
    r.add_argument("-o", "--outdir", type=Path, required=True, help="report folder")
    r.add_argument("--overwrite", action="store_true")
    r.set_defaults(run=run_report)
    e = actions.add_parser("export-nnunet", help="write an nnU-Net v2 raw dataset")
    e.add_argument("index", type=Path, help="dataset index from `msseg dataset scan`")
    e.add_argument("-o", "--output", type=Path, required=True, help="nnUNet_raw folder")
    e.add_argument("--id", type=int, default=501)
    e.add_argument("--name", default="MSSpineLesion")
    e.set_defaults(run=run_export)
    c = actions.add_parser("synth-chunks", help="semi-synthetic chunked whole-spine cohort "
                           "(BIDS) from the PAM50 maps: 3 axial chunks per session, lesions, "
                           "sites (msseg.data.whole_spine)")
    c.add_argument("outdir", type=Path, help="new BIDS folder")
    c.add_argument("--pam50", type=Path, required=True,
                   help="folder of the PAM50 label maps (e.g. ../shared/data/spine/PAM50)")
    c.add_argument("--subjects", default="A=4,B=4,C=2", metavar="SITE=N,…",
                   help="sessions per site, sites A, B, C (default A=4,B=4,C=2)")
    c.add_argument("--seed", type=int, default=0)
    c.set_defaults(run=run_synth_chunks)


def run_scan(args: argparse.Namespace) -> int:
    from msseg.data.index import assign_folds, save_index, scan

    check_outputs([args.output], args.overwrite)
    records = assign_folds(scan(args.root), args.folds, args.seed)
    save_index(records, args.output)
    contrasts = Counter(r.contrast for r in records)
    print(f"{len(records)} images of {len({r.patient for r in records})} patients "
          f"({', '.join(f'{k}: {v}' for k, v in sorted(contrasts.items()))}); "
          f"{sum(r.cord is not None for r in records)} with a cord mask, "
          f"{sum(r.lesion is not None for r in records)} with a lesion mask -> {args.output}")
    return 0


REPORT_FILES = ("counts.csv", "lesion_volumes.csv", "lesion_volumes.png", "sankey.png")


def run_report(args: argparse.Namespace) -> int:
    from msseg import io
    from msseg.cli.common import print_table
    from msseg.data.index import load_index
    from msseg.progress import progress
    from msseg.report import dataset as report

    records = load_index(args.index)
    paths = [args.outdir / name for name in REPORT_FILES]
    check_outputs(paths, args.overwrite, inputs=(args.index,))
    counts = report.count_table(records)
    volumes = report.lesion_volumes(records, wrap=lambda items: progress(items, "lesion masks"))
    args.outdir.mkdir(parents=True, exist_ok=True)
    io.write_csvs_together([(counts, paths[0]), (volumes, paths[1])])
    report.plot_lesion_volumes(volumes, paths[2])
    report.sankey(counts, paths[3])
    print_table(counts, f"{len(records)} scans of {len({r.patient for r in records})} patients")
    print(f"report written to {args.outdir}: {', '.join(REPORT_FILES)}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from msseg.data.index import load_index
    from msseg.data.nnunet_export import export_nnunet

    root = export_nnunet(load_index(args.index), args.output, args.id, args.name)
    print(f"nnU-Net raw dataset written to {root}")
    return 0


def parse_counts(text: str) -> dict[str, int]:
    """``"A=4,B=2"`` -> ``{"A": 4, "B": 2}``."""
    from msseg.errors import MssegError

    out = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not value.strip().isdigit():
            raise MssegError(f"--subjects {text!r}: want SITE=N,… (e.g. A=4,B=2)")
        out[key.strip()] = int(value)
    if not out:
        raise MssegError("--subjects: no site given")
    return out


def run_synth_chunks(args: argparse.Namespace) -> int:
    from msseg import io
    from msseg.data import whole_spine
    from msseg.errors import MssegError
    from msseg.progress import progress

    subjects = parse_counts(args.subjects)
    unknown = sorted(set(subjects) - set(whole_spine.SITES))
    if unknown:
        raise MssegError(f"--subjects: unknown site(s) {', '.join(unknown)} "
                         f"(known: {', '.join(whole_spine.SITES)})")
    if not (args.pam50 / "PAM50_levels.nii.gz").is_file():
        raise MssegError(f"{args.pam50}: no PAM50_levels.nii.gz (the PAM50 label maps folder)")
    if args.outdir.exists() and any(args.outdir.iterdir()):
        raise MssegError(f"{args.outdir}: exists and is not empty; give a new folder")
    table = whole_spine.write_cohort(args.pam50, args.outdir, subjects, args.seed,
                                     wrap=lambda jobs: progress(jobs, "sessions", 2))
    io.replace_atomically(args.outdir / "derivatives" / "labels" / "lesions.tsv",
                          lambda tmp: table.to_csv(tmp, sep="\t", index=False))
    per_region = table.region.value_counts().to_dict() if len(table) else {}
    print(f"{sum(subjects.values())} sessions × 3 chunks, {len(table)} lesions "
          f"({', '.join(f'{k} {v}' for k, v in per_region.items())}) -> {args.outdir}")
    return 0
