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
import warnings
from collections.abc import Sequence

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from msseg import __version__
from msseg.cli import (
    agree,
    centerline,
    compare,
    dataset,
    demo,
    evaluate,
    experiment,
    info,
    models,
    morphometry,
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
               morphometry, stats, agree, compare, dataset, train, experiment, demo, info)


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
    """Run one command. Every failure ends in one line on stderr and a non-zero exit code:
    1 for bad input (:class:`MssegError`) and for a missing optional dependency (the line
    names the extra to install), 2 for usage errors, 3 for an internal error (the
    traceback only with ``MSSEG_DEBUG=1``), 130 when interrupted; a closed stdout pipe
    (``msseg segment --list | head -1``) ends quietly."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    try:
        with warnings.catch_warnings():
            if not os.environ.get("MSSEG_DEBUG"):  # library warnings are noise to users
                warnings.simplefilter("ignore")
            return int(args.run(args) or 0)
    except MssegError as exc:
        return _fail(args.command, f"error: {exc}", 1)
    except BrokenPipeError:
        _silence_stdout()
        return 0
    except KeyboardInterrupt:
        return _fail(args.command, "interrupted", 130)
    except MemoryError:
        return _fail(args.command, "error: out of memory", 1)
    except Exception as exc:  # never a traceback for users; MSSEG_DEBUG=1 shows it
        from msseg.extras import extra_of, hint

        if isinstance(exc, ModuleNotFoundError) and extra_of(exc.name) is not None:
            return _fail(args.command, f"error: {hint(exc.name)}", 1)   # a missing extra
        if isinstance(exc, OSError) and exc.filename and not os.environ.get("MSSEG_DEBUG"):
            # a file msseg could not read or write (a full disk, a mount gone read-only)
            return _fail(args.command, f"error: {exc.filename}: {exc.strerror or exc}", 1)
        if os.environ.get("MSSEG_DEBUG"):
            raise
        from msseg.io import describe

        return _fail(args.command, f"internal error: {type(exc).__name__}: {describe(exc)} "
                     "(please report it; MSSEG_DEBUG=1 shows the traceback)", 3)


def entry() -> None:
    """The ``msseg`` console script: :func:`main`, then flush and leave at once. The
    interpreter's own teardown of every imported module (pandas, SciPy, ONNX Runtime…) took
    0.10–0.15 s of a 2 s segmentation here; nothing is left for it to do (pools, clusters and
    files are closed inside the commands; atexit handlers still run)."""
    code = main()
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, ValueError, OSError):
            pass
    os._exit(code)


def _fail(command: str, message: str, code: int) -> int:
    try:
        print(f"msseg {command}: {message}", file=sys.stderr)
    except (BrokenPipeError, ValueError):
        pass
    return code


def _silence_stdout() -> None:
    """After a closed pipe, point stdout at /dev/null so the interpreter's final flush is quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    entry()
