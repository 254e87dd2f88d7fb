"""Centerline accuracy of stage 1 on the held-out real scans: CNN1 + optimal path vs the
intensity baseline (same optimisation, blob-filter heatmap, no CNN), and CNN1 on every whole
slice ("cnn one-pass", stage 1 before it ran in two passes).

Reference: the centre of mass of the manual cord mask on each axial slice (RPI). Measures
(msseg.evaluation.centerline): centerline error in mm (root mean squared in-plane distance, as
Gros et al. 2019 report) and localisation rate (share of cord slices whose point is inside the
manual mask). Also runs both methods on the unlabelled real scans (t2_ms, t2_lumbar) and
reports the slices detected and the time.

Usage: .venv/bin/python recipes/two_stage/evaluate_centerline.py
         [--index work/lesion_ms_axial_t2/dataset.json] [--shared ../shared/data]
         [--out work/two_stage/centerline_eval.csv]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from msseg import io
from msseg.centerline.detect import CenterlineOptions
from msseg.data.index import load_index
from msseg.evaluation.centerline import centerline_from_mask, centerline_mse_mm, localisation_rate
from msseg.experiments.holdout import markdown_table
from msseg.inference.centerline import CenterlineFinder
from msseg.models.registry import open_model
from msseg.preprocess.orient import to_rpi
from msseg.preprocess.tube import centres_on_grid


def score(finder: CenterlineFinder, image_path: str, cord_path: str | None) -> dict:
    image = io.load(image_path)
    start = time.perf_counter()
    line = finder.find(image)
    seconds = time.perf_counter() - start
    row = {"detected_slices": int(line.detected.sum()), "slices": len(line.detected),
           "seconds": round(seconds, 2)}
    if cord_path is None or not line.found:
        return row
    rpi = to_rpi(image)
    ref = to_rpi(io.load(cord_path)).data > 0.5
    points = centres_on_grid(line.world(), rpi.affine, rpi.shape[2])
    row["mse_mm"] = centerline_mse_mm(points, centerline_from_mask(ref), rpi.spacing)
    row["localisation_rate"] = localisation_rate(points, ref)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, default=Path("work/lesion_ms_axial_t2/dataset.json"))
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument("--model", type=Path, help="CNN1 model folder (default: bundled)")
    parser.add_argument("--out", type=Path, default=Path("work/two_stage/centerline_eval.csv"))
    args = parser.parse_args()
    cnn_model = open_model(args.model) if args.model else None
    finders = {"cnn": CenterlineFinder("cnn", cnn_model),
               # CNN1 on every whole slice, as before stage 1 ran in two passes (issue 28)
               "cnn one-pass": CenterlineFinder("cnn", cnn_model,
                                                options=CenterlineOptions(coarse_step_mm=0)),
               "intensity": CenterlineFinder("intensity")}
    held = [r for r in load_index(args.index)
            if r.fold == 0 and r.lesion is None]                 # the real scans as acquired
    unlabelled = [args.shared / "spine/ms_patient_unlabelled" / n
                  for n in ("t2_ms/t2.nii.gz", "t2_lumbar/t2_lumbar.nii.gz")]
    rows = []
    for method, finder in finders.items():
        for r in held:
            rows.append({"method": method, "image": Path(r.image).name, "contrast": r.contrast,
                         "orientation": r.orientation, **score(finder, r.image, r.cord)})
        for path in unlabelled:
            rows.append({"method": method, "image": path.name, "contrast": "T2w",
                         "orientation": io.load(path).orientation,
                         **score(finder, str(path), None)})
    table = pd.DataFrame(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False)
    print(markdown_table(table.round(3)))
    summary = table.groupby("method")[["mse_mm", "localisation_rate"]].agg(["median", "mean"])
    print(summary.round(3))


if __name__ == "__main__":
    main()
