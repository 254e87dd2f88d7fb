"""``msseg demo``: phantom -> imperfect lesion mask -> ``msseg evaluate``, on built-in data.

Until a bundled model exists, the "prediction" is the phantom's true lesion mask perturbed the
way models err (a missed lesion, boundary errors, a false positive in the cord).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from msseg import io
from msseg.synth import make_phantom, perturb_mask


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the evaluation on a synthetic phantom",
                       description=__doc__)
    p.add_argument("-o", "--outdir", type=Path, default=Path("demo_out"))
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from msseg.cli.main import main

    start = time.perf_counter()
    phantom = make_phantom(args.seed, n_lesions=8)
    pred = perturb_mask(phantom.lesion.data, seed=args.seed, allowed=phantom.cord.data > 0)
    out = args.outdir
    io.save(phantom.image, out / "sub-phantom_T2w.nii.gz")
    cord_path = out / "ref_cord" / "sub-phantom_T2w_seg-manual.nii.gz"
    io.save_like(phantom.cord.data, phantom.image, cord_path)
    ref_path = out / "ref" / "sub-phantom_T2w_lesion-manual.nii.gz"
    io.save_like(phantom.lesion.data, phantom.image, ref_path)
    pred_path = out / "pred" / "sub-phantom_T2w_label-lesion_seg.nii.gz"
    io.save_like(pred, phantom.image, pred_path)
    print(f"phantom {phantom.image.shape} at {phantom.image.spacing} mm with "
          f"{len(phantom.lesions)} lesions written to {out}/")
    code = main(["evaluate", "-p", str(pred_path), "-r", str(ref_path), "--overwrite",
                 "-o", str(out / "metrics.csv"), "--per-lesion", str(out / "lesions.csv"),
                 "--summary", str(out / "summary.csv")])
    print(f"tables in {out}/metrics.csv, lesions.csv, summary.csv "
          f"({time.perf_counter() - start:.2f} s)")
    return code
