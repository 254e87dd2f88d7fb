"""Entry point of the ``msseg`` command. ``main(argv)`` returns the exit code (tests call it).

The dispatcher and every subcommand's parser import only the standard library and NumPy; each
subcommand imports what it needs (torch, MONAI, pandas…) when it runs, so ``msseg --help`` and
``msseg evaluate`` do not pay for libraries they never use. OpenMP threads wait passively
(``OMP_WAIT_POLICY=PASSIVE`` unless set): a busy neighbour on the machine then slows msseg down
in proportion, not threefold.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from msseg import __version__
from msseg.cli import (
    centerline,
    dataset,
    demo,
    evaluate,
    experiment,
    models,
    normalize,
    segment,
    stats,
    stitch,
    straighten,
    train,
    warp,
)
from msseg.errors import MssegError

SUBCOMMANDS = (segment, models, centerline, stitch, straighten, warp, normalize, evaluate,
               stats, dataset, train, experiment, demo)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="msseg",
        description="Spinal cord and MS lesion segmentation and evaluation.")
    parser.add_argument("--version", action="version", version=f"msseg {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in SUBCOMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    try:
        return int(args.run(args) or 0)
    except MssegError as exc:
        print(f"msseg {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
