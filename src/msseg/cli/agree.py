"""``msseg agree``: where two models agree on the lesions of the same scans.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from msseg.errors import MssegError

OUTPUTS = ("agreement.csv", "agreement_lesions.csv", "agreement_summary.csv", "agreement.png")

DESCRIPTION = """\
``msseg agree``: where two models agree on the lesions of the same scans.

    msseg agree MODEL_A MODEL_B -i INPUT… -o OUTDIR [--overlap 0] [--centerline FILE…]
                [--threads N] [--jobs N] [--overwrite]

Runs ``msseg segment`` with each model, as it runs by default, into OUTDIR/<A>/ and OUTDIR/<B>/
(named after the models; a rerun reuses what is done), then compares each scan's two lesion
masks: each model's lesions found by the other (touching it, or covering --overlap of the
lesion), volumes, voxel Dice, lesions outside the cord (the cord mask of the first model that
writes one). OUTDIR gets agreement.csv (a row per scan), agreement_lesions.csv (a row per
lesion), agreement_summary.csv (the cohort) and agreement.png (lesion volume and count per
scan, A against B). --centerline goes to the SCT lesion models among the two.

Agreement is not accuracy: on unlabelled real scans it says where a model agrees with another
(say one validated on real patients), not which of them is right.
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("agree", help="lesion-wise agreement of two models on the same scans",
                       description=DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_a", metavar="MODEL_A", help="task, model folder or model file")
    p.add_argument("model_b", metavar="MODEL_B")
    p.add_argument("-i", "--input", nargs="+", type=Path, required=True,
                   help="images and/or folders")
    p.add_argument("-o", "--outdir", type=Path, required=True)
    p.add_argument("--overlap", type=float, default=0.0,
                   help="share of a lesion the other mask must cover for it to count as found "
                   "(default 0: touching is enough)")
    p.add_argument("--centerline", nargs="+", type=Path, metavar="CENTERLINE",
                   help="for SCT's lesion models: as msseg segment --centerline")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    from msseg import io
    from msseg.cli.common import check_folder, check_outputs, print_table
    from msseg.evaluation.agreement import pool
    from msseg.inference.batch import collect_inputs

    if not 0 <= args.overlap <= 1:
        raise MssegError(f"--overlap {args.overlap}: must be in [0, 1]")
    models = _models(args.model_a, args.model_b)
    folders = [args.outdir / name for name, _ in models]
    check_folder(args.outdir)
    check_outputs([args.outdir / n for n in OUTPUTS], args.overwrite)
    inputs = collect_inputs(args.input)
    takes_centerline = [_takes_centerline(model) for _, model in models]
    if args.centerline and not any(takes_centerline):
        raise MssegError("--centerline: neither model is an SCT lesion model (the others find "
                         "the cord themselves)")
    failed = 0
    for task, folder, takes in zip((args.model_a, args.model_b), folders, takes_centerline,
                                   strict=True):
        failed += _segment(task, inputs, folder, args, args.centerline if takes else None)
    rows, lesions = _compare(inputs, folders, args.overlap)
    table = pd.DataFrame(rows)
    io.write_csv(table, args.outdir / "agreement.csv")
    io.write_csv(lesions, args.outdir / "agreement_lesions.csv")
    summary = {"model_a": models[0][0], "model_b": models[1][0],
               **pool(r for r in rows if r["status"] == "ok")}
    io.write_csv(pd.DataFrame([summary]), args.outdir / "agreement_summary.csv")
    figure(table[table.status == "ok"], models[0][0], models[1][0],
           args.outdir / "agreement.png")
    print_table(table.drop(columns=["intersection_mm3"]),
                f"msseg agree: A = {models[0][0]}, B = {models[1][0]}")
    print(_sentence(summary))
    print(f"results in {args.outdir}")
    return 1 if failed or (table.status != "ok").any() else 0


def _models(a: str, b: str) -> list[tuple[str, object]]:
    """(name, model) of both; their output folders are named after them."""
    from msseg.models.registry import MODEL_FILE_SUFFIXES, find_model, model_name

    found = []
    for task in (a, b):
        model = find_model(task)
        name = model_name(model)
        for suffix in MODEL_FILE_SUFFIXES:
            name = name.removesuffix(suffix)
        found.append((name, model))
    if found[0][1].path.resolve() == found[1][1].path.resolve():
        raise MssegError(f"{a} and {b} are the same model; agreement needs two")
    if found[0][0] == found[1][0]:
        raise MssegError(f"{a} and {b} are both called {found[0][0]}; import one under "
                         "another name (msseg models import … --name)")
    return found


def _takes_centerline(model) -> bool:
    from msseg.models.sct import SctModel

    return isinstance(model, SctModel) and model.kind == "lesion"


def _segment(task: str, inputs: list[Path], folder: Path, args, centerline) -> int:
    """``msseg segment TASK -i … -o FOLDER`` in this process; 1 if a scan failed."""
    from msseg.cli import segment
    from msseg.cli.common import run_subcommand

    argv = ["segment", task, "-i", *map(str, inputs), "-o", str(folder),
            "--threads", str(args.threads), "--jobs", str(args.jobs)]
    if centerline:
        argv += ["--centerline", *map(str, centerline)]
    if args.overwrite:
        argv.append("--overwrite")
    print(f"== {task} -> {folder}", file=sys.stderr)
    return run_subcommand(segment, argv)


def _compare(inputs: list[Path], folders: list[Path], overlap: float):
    """One row per scan and the lesion rows of every scan."""
    import pandas as pd

    from msseg import io
    from msseg.evaluation.agreement import SCAN_COLUMNS, lesion_agreement

    rows, lesions = [], []
    for image in inputs:
        name = io.strip_nifti_suffix(image.name)
        paths = [f / f"{name}_label-lesion_seg.nii.gz" for f in folders]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            rows.append({"scan": name, "status": "failed",
                         **dict.fromkeys(SCAN_COLUMNS, float("nan")),
                         "error": f"no lesion mask: {missing[0]}"})
            continue
        a, b = (io.load(p) for p in paths)
        cord = next((io.load(c).data > 0 for f in folders
                     if (c := f / f"{name}_label-SC_seg.nii.gz").is_file()), None)
        row, per_lesion = lesion_agreement(a.data > 0, b.data > 0, a.voxel_volume_mm3, cord,
                                           overlap)
        rows.append({"scan": name, "status": "ok", **row, "error": ""})
        lesions.append(per_lesion.assign(scan=name))
    columns = ["scan", "model", "lesion_id", "volume_mm3", "overlap_fraction",
               "found_by_other", "outside_cord"]
    table = pd.concat(lesions, ignore_index=True)[columns] if lesions else \
        pd.DataFrame(columns=columns)
    return rows, table


def _sentence(s: dict) -> str:
    def share(x: float) -> str:
        return "—" if x != x else f"{100 * x:.0f}%"

    return (f"{s['scans']} scan(s): A marked {s['n_a']} lesion(s) ({s['volume_a_mm3']:.1f} mm³), "
            f"B {s['n_b']} ({s['volume_b_mm3']:.1f} mm³); B found {share(s['share_a_found'])} "
            f"of A's, A found {share(s['share_b_found'])} of B's; voxel Dice "
            f"{s['dice']:.3f}. Agreement, not accuracy: neither mask is ground truth.")


def figure(table, name_a: str, name_b: str, path: Path) -> Path:
    """Per scan: total lesion volume and lesion count, A against B, with the identity line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 4.2))
    for ax, (a, b, what) in zip(axes, (("volume_a_mm3", "volume_b_mm3", "lesion volume (mm³)"),
                                       ("n_a", "n_b", "lesions")), strict=True):
        x, y = table[a].astype(float), table[b].astype(float)
        top = max(float(x.max()) if len(x) else 0, float(y.max()) if len(y) else 0, 1.0) * 1.05
        ax.plot([0, top], [0, top], color="0.6", lw=1, zorder=0)
        ax.scatter(x, y, s=28, color="tab:red", alpha=0.8)
        ax.set(xlim=(0, top), ylim=(0, top), xlabel=f"{name_a}: {what}",
               ylabel=f"{name_b}: {what}", title=f"{what} per scan")
        ax.set_aspect("equal")
    fig.suptitle("agreement, not accuracy: neither model is ground truth", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
