"""``msseg experiment cross-dataset | preprocessing``: multi-model experiments on one engine.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from msseg.cli.common import print_table
from msseg.errors import MssegError

DESCRIPTION = """\
``msseg experiment cross-dataset | preprocessing``: multi-model experiments on one engine.

Both designs run on :mod:`msseg.experiments.engine`: models already trained are reused and the
results table is appended case by case, so a killed experiment continues where it stopped.

``preprocessing`` (the axial-T2w paper's design, :mod:`msseg.experiments.preprocessing`):
``--dataset`` a chunk index (``msseg dataset scan`` of ``_chunk-N`` images with cord and
lesion masks), ``--variants`` of chunks-native, stitched-native, chunks-straightened,
stitched-straightened, ``--dims 2,3``, ``--folds K`` (patient level), an optional base training
``--config`` (YAML; default: msseg's defaults) and ``--budget EPOCHS[xITERATIONS]``;
``--whole-context`` adds a 3D model per variant whose patch spans the whole S–I extent;
``--test-sites C,D`` holds those sites out and tests every variant's fold ensemble on them,
with ``--baseline TASK_OR_FOLDER`` on the same sessions (``--train-sites A,B``: train on those
only) -> generalisation.csv. Writes
results.csv (one row per session × model × reference), lesions.csv, table.csv/.md,
statistics.csv, raincloud_<metric>.png, detection_by_chunk.csv, detection_by_volume.csv,
lesion_counts.csv and detection.png into OUT.

``cross-dataset``: train on each dataset, test on every other.

``--dataset NAME=INDEX`` (one or more to train on; indexes from ``msseg dataset scan``),
``--test NAME=INDEX`` (test-only: never trained on; two datasets in all), a base training
config (YAML, fields of TrainConfig; its ``dataset``/``output`` are set per run), ``--combine``
to also train on the union of all datasets but one, ``--ablation KEY=a,b`` (KEY one of
normalization, architecture, loss, label_consensus, augmentation; the first value is used for
the main matrix). Writes per_image.csv, dice_matrix.csv, iou_matrix.csv, matrix.png,
anova_tukey.csv and ablations.csv into OUT (see msseg.experiments.cross_dataset). Runs that
already have a model are reused, so a killed experiment resumes.
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("experiment", help="multi-model experiments (cross-dataset)",
                       description=DESCRIPTION)
    kinds = p.add_subparsers(dest="kind", required=True, metavar="KIND")
    c = kinds.add_parser("cross-dataset", help="train on each dataset, test on the others",
                         description=DESCRIPTION)
    c.add_argument("config", type=Path, help="base training config (YAML)")
    c.add_argument("--dataset", action="append", required=True, metavar="NAME=INDEX")
    c.add_argument("--test", action="append", default=[], metavar="NAME=INDEX",
                   help="a test-only dataset: every model is tested on it, none trained")
    c.add_argument("-o", "--outdir", type=Path, required=True)
    c.add_argument("--combine", action="store_true",
                   help="also train on the union of all datasets but one")
    c.add_argument("--ablation", action="append", default=[], metavar="KEY=a,b")
    c.add_argument("--max-test-images", type=int,
                   help="test on at most this many images per dataset (CPU budget)")
    c.add_argument("--label-consensus", choices=("none", "union", "majority", "staple"))
    c.set_defaults(run=run)
    pre = kinds.add_parser("preprocessing", help="chunks vs stitched × native vs straightened "
                           "× 2D vs 3D (the axial-T2w paper's design)", description=DESCRIPTION,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    pre.add_argument("--dataset", type=Path, required=True, help="chunk dataset index (JSON)")
    pre.add_argument("-o", "--outdir", type=Path, required=True)
    pre.add_argument("--config", type=Path, help="base training config (YAML)")
    pre.add_argument("--variants", default="chunks-native,stitched-native,"
                     "chunks-straightened,stitched-straightened")
    pre.add_argument("--dims", default="2,3")
    pre.add_argument("--folds", type=int, default=3, help="patient-level folds (default 3)")
    pre.add_argument("--seed", type=int, default=0)
    pre.add_argument("--budget", metavar="EPOCHS[xITERATIONS]",
                     help="training budget of every model, e.g. 5x50 (default: the config's)")
    pre.add_argument("--whole-context", action="store_true",
                     help="also a 3D model per variant whose patch covers the whole S–I extent")
    pre.add_argument("--test-sites", metavar="C,D",
                     help="hold these sites out; test each variant's fold ensemble on them")
    pre.add_argument("--train-sites", metavar="A,B", help="train on these sites only")
    pre.add_argument("--baseline", metavar="TASK_OR_FOLDER",
                     help="a model scored on the test sites' sessions for comparison")
    pre.add_argument("--threads", type=int, default=0, help="CPU threads (0: all cores)")
    pre.set_defaults(run=run_preprocessing)


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
    datasets, tests = parse_datasets(args.dataset), parse_datasets(args.test)
    results = run_experiment(datasets, base, args.outdir, args.combine,
                             parse_ablations(args.ablation),
                             max_test_images=args.max_test_images, test_only=tests)
    for name in ("dice_matrix", "iou_matrix"):
        print_table(results[name].round(3).reset_index(), name.replace("_", " "))
    if len(results["ablations"]):
        print_table(results["ablations"], "ablations (paired Wilcoxon)")
    print(f"results in {args.outdir}")
    return 0


def parse_budget(text: str | None) -> dict[str, int]:
    if not text:
        return {}
    epochs, _, iterations = text.lower().partition("x")
    try:
        out = {"epochs": int(epochs)}
        if iterations:
            out["iterations_per_epoch"] = int(iterations)
    except ValueError:
        raise MssegError(f"--budget {text!r}: want EPOCHS or EPOCHSxITERATIONS, e.g. 5x50"
                         ) from None
    if min(out.values()) < 1:
        raise MssegError(f"--budget {text!r}: epochs and iterations must be at least 1")
    return out


def run_preprocessing(args: argparse.Namespace) -> int:
    from msseg.data.index import load_index
    from msseg.experiments.engine import run_design
    from msseg.experiments.preprocessing import Preprocessing
    from msseg.inference.options import SegmentOptions
    from msseg.progress import progress
    from msseg.training.config import TrainConfig

    base = TrainConfig.from_yaml(args.config) if args.config else TrainConfig()
    base = base.replace(**parse_budget(args.budget), num_threads=args.threads or
                        base.num_threads)
    try:
        dims = [int(d) for d in args.dims.split(",") if d.strip()]
    except ValueError:
        raise MssegError(f"--dims {args.dims!r}: want 2, 3 or 2,3") from None
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    design = Preprocessing(load_index(args.dataset), base, variants, dims, args.folds,
                           args.seed, SegmentOptions(threads=args.threads),
                           wrap=lambda items: progress(items, "stitching sessions", 2),
                           whole_context=args.whole_context,
                           train_sites=_sites(args.train_sites),
                           test_sites=_sites(args.test_sites), baseline=args.baseline)
    results = run_design(design, args.outdir, lambda items, name: progress(items, name, 1))
    print_table(results["table"], "preprocessing design, cross-validation (mean ± sd per "
                "session)")
    if len(results["generalisation"]):
        print_table(results["generalisation"], "test sites (fold ensembles; mean per site)")
    print(f"results in {args.outdir}")
    return 0


def _sites(text: str | None) -> list[str] | None:
    return [t.strip() for t in text.split(",") if t.strip()] if text else None
