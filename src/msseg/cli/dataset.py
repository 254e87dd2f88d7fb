"""``msseg dataset``: index a dataset, split it by patient, export it to nnU-Net."""

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
    e = actions.add_parser("export-nnunet", help="write an nnU-Net v2 raw dataset")
    e.add_argument("index", type=Path, help="dataset index from `msseg dataset scan`")
    e.add_argument("-o", "--output", type=Path, required=True, help="nnUNet_raw folder")
    e.add_argument("--id", type=int, default=501)
    e.add_argument("--name", default="MSSpineLesion")
    e.set_defaults(run=run_export)


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


def run_export(args: argparse.Namespace) -> int:
    from msseg.data.index import load_index
    from msseg.data.nnunet import export_nnunet

    root = export_nnunet(load_index(args.index), args.output, args.id, args.name)
    print(f"nnU-Net raw dataset written to {root}")
    return 0
