"""SCT's released lesion models run by msseg beside msseg's own models, on real scans.

On the real MS patient ``t2_ms`` (axial T2w) and the real scans of ../shared/data taken as
lesion-free (T2*w / GRE for ``sct_lesion_t2s``, axial T2w for ``sct_lesion_t2_ax``): lesion
count and volume of each model, and on ``t2_ms`` how many of SCT's lesions each model's mask
touches. No ground truth exists for any of these scans: this is agreement, not accuracy.

Writes ``recipes/sct_models/README.md`` (the results, copied into the documentation) and
``src/msseg/models/sct_agreement.md`` (the same section, which the generated cards of imported
SCT models include). Every model runs with its defaults: SCT's models with msseg's automatic
centerline (SCT's CNN1 + msseg's optimal path), and on ``t2_ms`` also with the centerline file
SCT's own reference run used (``--centerline``, pure SCT pipeline).

Run: .venv/bin/python recipes/sct_models/agreement.py [--models ../shared/models/sct_deepseg]
"""

from __future__ import annotations

import argparse
import datetime
from pathlib import Path

import cc3d
import numpy as np

from msseg import io
from msseg.inference.options import SegmentOptions
from msseg.inference.segment import make_segmenter
from msseg.models.registry import find_model
from msseg.models.sct import SctModel

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"
SPINE = "data/spine"
#: scan -> (image under shared/, kind, SCT contrast)
SCANS = {
    "t2_ms": (f"{SPINE}/ms_patient_unlabelled/t2_ms/t2.nii.gz", "real MS patient, axial T2w",
              "t2_ax"),
    "sub-unf01_T2w": (f"{SPINE}/ivadomed_unf/sub-unf01/anat/sub-unf01_T2w.nii.gz",
                      "taken as lesion-free, axial T2w", "t2_ax"),
    "errsm_18 GRE": (f"{SPINE}/sct_2014_testing/errsm_18/gre/gre.nii.gz",
                     "taken as lesion-free, T2*w (GRE)", "t2s"),
    "t2s_uncropped": (f"{SPINE}/sct_testing_data/t2s/t2s_uncropped.nii.gz",
                      "taken as lesion-free, T2*w", "t2s"),
    "sub-unf01_T2star": (f"{SPINE}/ivadomed_unf/sub-unf01/anat/sub-unf01_T2star.nii.gz",
                         "taken as lesion-free, T2*w", "t2s"),
    "sub-test001_T2star": (f"{SPINE}/ivadomed_testing/sub-test001_T2star_at17d1835.nii.gz",
                           "taken as lesion-free, T2*w", "t2s"),
}
OWN = ("lesion_ms_axial_t2", "lesion_ms", "lesion_2stage")
T2_MS_CENTERLINE = SHARED / "peers/sct_deepseg_lesion/t2_ms/centerline_input.nii.gz"


def components(mask: np.ndarray) -> np.ndarray:
    return cc3d.connected_components(mask.astype(np.uint8), connectivity=26)


def found_of(reference: np.ndarray, mask: np.ndarray) -> int:
    """Components of ``reference`` that ``mask`` touches."""
    labels = components(reference)
    return len(set(np.unique(labels[mask & (labels > 0)])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=SHARED / "models" / "sct_deepseg")
    args = parser.parse_args()
    sct = {c: make_segmenter(SctModel.from_file(args.models / f"{c}_lesion.h5"),
                             SegmentOptions(postprocessing=False)) for c in ("t2_ax", "t2s")}
    own = {name: make_segmenter(find_model(name)) for name in OWN}
    rows, reference = [], None
    for scan, (path, kind, contrast) in SCANS.items():
        image = io.load(SHARED / path)
        runs = [(f"sct_lesion_{contrast}", "automatic", sct[contrast].segment(image, scan))]
        if scan == "t2_ms":
            runs.append((f"sct_lesion_{contrast}", "SCT's file", sct[contrast].segment(
                image, scan, centerline_mask=io.load(T2_MS_CENTERLINE))))
            reference = runs[0][2].lesion.data > 0
        runs += [(name, "msseg", seg.segment(image, scan)) for name, seg in own.items()]
        for model, centerline, result in runs:
            mask = result.lesion.data > 0
            n = int(components(mask).max())
            volume = float(mask.sum()) * image.voxel_volume_mm3
            found = f"{found_of(reference, mask)} of {int(components(reference).max())}" \
                if scan == "t2_ms" else ""
            rows.append((scan, kind, model, centerline, n, volume, found))
    text = table(rows)
    (ROOT / "recipes" / "sct_models" / "README.md").write_text(page(text))
    (ROOT / "src" / "msseg" / "models" / "sct_agreement.md").write_text(text)
    print(text)


def table(rows: list[tuple]) -> str:
    lines = [f"## Agreement with msseg's own models on real scans "
             f"(`recipes/sct_models/agreement.py`, {datetime.date.today().isoformat()})", "",
             "No ground truth exists for these scans: counts and volumes say where the models "
             "agree, not which is right. `t2_ms` is a real MS patient; the other scans are taken "
             "as lesion-free, so every lesion there is a false positive. \"of SCT's\": how many "
             "of the lesions of `sct_lesion_t2_ax` (automatic centerline) the mask touches.", "",
             "| scan | what it is | model | centerline | lesions | volume (mm³) | of SCT's |",
             "|---|---|---|---|---|---|---|"]
    for scan, kind, model, centerline, n, volume, found in rows:
        lines.append(f"| {scan} | {kind} | {model} | {centerline} | {n} | {volume:.1f} | "
                     f"{found} |")
    return "\n".join(lines) + "\n"


def page(text: str) -> str:
    return ("# SCT's released two-stage models in msseg\n\n"
            "`msseg models import-sct $SCT_DIR/data` (or `msseg models import t2_ax_lesion.h5`)"
            " makes SCT's released `sct_deepseg_lesion` models tasks of `msseg segment` "
            "(`sct_lesion_t2_ax`, `sct_lesion_t2s`, with their CNN1 centerline detectors). "
            "See docs/how-to/released-models.md for what msseg reproduces "
            "exactly and what differs. This page is generated by "
            "`recipes/sct_models/agreement.py`.\n\n" + text)


if __name__ == "__main__":
    main()
