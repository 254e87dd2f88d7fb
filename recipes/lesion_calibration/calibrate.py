"""Calibrate msseg's lesion synthesis against SCT's released real-data lesion models.

SCT's released `sct_deepseg_lesion` models were trained on real MS patients; here they are an
instrument, run through msseg (`msseg.inference.sct_lesion`, SCT's values), never a source of
training targets (their terms allow use as a reference only: ../shared/models/sct_deepseg).

1. **Real lesions** as SCT's axial model sees them on the real MS patient `t2_ms` (automatic
   centerline): per lesion and slice its area, lesion / white-matter intensity ratio (mean and
   peak), depth ``r`` in the cord and column (msseg.data.lesion_synthesis.CrossSections; the
   cord from `lesion_ms_axial_t2`), and SCT's highest probability inside it.
2. **Synthetic lesions**, one per image, inserted by each prior of ``PRIORS`` into scans in the
   models' own domain: `t2_ms` itself (thick axial T2w; SCT's own lesions, dilated, are kept
   clear) for the `t2_ax` model, sub-unf01's T2*w (held out from every msseg training set) for
   the `t2s` model. SCT's model runs with a fixed centerline file (SCT's own for `t2_ms`, the
   manual cord mask for sub-unf01), so an inserted lesion cannot move SCT's 48 × 48 crop.
   Measured per lesion: detected (SCT's mask touches it), SCT's highest probability in it,
   volume, contrast, column.

The prior is calibrated when SCT's model detects synthetic lesions at the real lesions'
contrast, size and place about as it detects the real ones. Writes
``recipes/lesion_calibration/README.md``'s generated part and ``OUT/calibration.csv``.

Run: .venv/bin/python recipes/lesion_calibration/calibrate.py [--images 24] [--out work/calibration]
"""

from __future__ import annotations

import argparse
import datetime
from dataclasses import replace
from pathlib import Path

import cc3d
import numpy as np
import pandas as pd
from scipy import ndimage

from msseg import io
from msseg.data.lesion_synthesis import (
    CrossSections,
    LesionPrior,
    calibrated_prior,
    prior_for_contrast,
    synthesize_lesions,
)
from msseg.inference.options import SegmentOptions
from msseg.inference.segment import make_segmenter
from msseg.models.registry import find_model
from msseg.models.sct import SctModel
from msseg.preprocess.orient import to_rpi

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"
SPINE = SHARED / "data" / "spine"
T2_MS = SPINE / "ms_patient_unlabelled/t2_ms/t2.nii.gz"
T2_MS_CENTERLINE = SHARED / "peers/sct_deepseg_lesion/t2_ms/centerline_input.nii.gz"
UNF = SPINE / "ivadomed_unf"
T2STAR = (UNF / "sub-unf01/anat/sub-unf01_T2star.nii.gz",
          UNF / "derivatives/labels/sub-unf01/anat/sub-unf01_T2star_seg-manual.nii.gz")
COLUMNS = ("dorsal", "lateral", "ventral")
VOLUME_BINS = (0, 20, 50, 100, np.inf)
CONTRAST_BINS = (1.0, 1.3, 1.6, 2.0, np.inf)


def priors(contrast: str) -> dict[str, LesionPrior]:
    """The priors compared: the one every model was trained with until now (the contrast's
    appearance), and the calibrated one; one lesion per image here."""
    always = LesionPrior(p_lesion_free=0.0)
    return {"before": prior_for_contrast(contrast, always),
            "calibrated": replace(calibrated_prior(contrast), p_lesion_free=0.0)}


def sct_segmenter(models: Path, contrast: str):
    return make_segmenter(SctModel.from_file(models / f"{contrast}_lesion.h5"),
                          SegmentOptions(postprocessing=False))


def real_lesions(models: Path) -> pd.DataFrame:
    """SCT's lesions on t2_ms, one row per lesion and slice (see module)."""
    image = io.load(T2_MS)
    result = sct_segmenter(models, "t2_ax").segment(image, "t2_ms")
    cord = to_rpi(make_segmenter(find_model("lesion_ms_axial_t2")).segment(image, "t2_ms")
                  .cord).data > 0
    data = to_rpi(image).data.astype(np.float64)
    lesion = to_rpi(result.lesion).data > 0
    probability = to_rpi(result.lesion_probability).data
    sections = CrossSections(cord, np.asarray(to_rpi(image).spacing))
    labels = cc3d.connected_components(lesion, connectivity=26)
    rows = []
    for i in range(1, int(labels.max()) + 1):
        component = labels == i
        volume = component.sum() * to_rpi(image).voxel_volume_mm3
        for k in np.flatnonzero(component.any(axis=(0, 1))):
            here = component[:, :, k]
            white = np.median(data[:, :, k][sections.outer[:, :, k] & ~lesion[:, :, k]])
            values = data[:, :, k][here]
            inside = here & cord[:, :, k]
            rows.append({"lesion": i, "slice": int(k), "volume_mm3": volume,
                         "area_voxels": int(here.sum()),
                         "ratio_to_wm_mean": values.mean() / white,
                         "ratio_to_wm_peak": values.max() / white,
                         "r": float(sections.r[:, :, k][inside].mean()) if inside.any() else 1.0,
                         "column": COLUMNS[int(np.bincount(
                             sections.column[:, :, k][inside], minlength=3).argmax())]
                         if inside.any() else "outside",
                         "sct_max_probability": float(probability[component].max())})
    return pd.DataFrame(rows)


def scan_setups(models: Path) -> list[dict]:
    """Where synthetic lesions go: the image, its cord, the centerline file SCT runs with,
    SCT's model and the region kept clear of lesions (SCT's own on t2_ms)."""
    image = io.load(T2_MS)
    cord = make_segmenter(find_model("lesion_ms_axial_t2")).segment(image, "t2_ms").cord
    own = sct_segmenter(models, "t2_ax").segment(
        image, "t2_ms", centerline_mask=io.load(T2_MS_CENTERLINE)).lesion.data > 0
    clear = ndimage.binary_dilation(own, iterations=4)
    star, star_cord = io.load(T2STAR[0]), io.load(T2STAR[1])
    return [
        {"scan": "t2_ms", "contrast": "T2w", "sct": "t2_ax", "image": image,
         "cord": _inner_slices(cord.with_data(((cord.data > 0) & ~clear).astype(np.uint8))),
         "centerline": io.load(T2_MS_CENTERLINE)},
        {"scan": "sub-unf01_T2star", "contrast": "T2starw", "sct": "t2s", "image": star,
         "cord": _inner_slices(star_cord.with_data((star_cord.data > 0.5).astype(np.uint8))),
         "centerline": star_cord},
    ]


def _inner_slices(cord, ends: int = 2):
    """The cord without its first and last ``ends`` axial slices: SCT's pipeline gives no
    probability on a thick scan's end slices (its 0.5 mm resampling along z), so a lesion
    there would measure the pipeline, not the network."""
    from msseg.preprocess.orient import reorient_like

    rpi = to_rpi(cord)
    data = rpi.data.copy()
    data[:, :, :ends] = 0
    data[:, :, data.shape[2] - ends:] = 0
    return reorient_like(rpi.with_data(data), cord)


def synthetic_detection(models: Path, n_images: int) -> pd.DataFrame:
    """One synthetic lesion per image, each prior, each setup: SCT's response (see module)."""
    segmenters = {c: sct_segmenter(models, c) for c in ("t2_ax", "t2s")}
    rows = []
    for setup in scan_setups(models):
        spacing = np.asarray(to_rpi(setup["image"]).spacing)
        sections = CrossSections(to_rpi(setup["cord"]).data > 0, spacing)
        for name, prior in priors(setup["contrast"]).items():
            for seed in range(n_images):
                synth = synthesize_lesions(setup["image"], setup["cord"], seed=seed,
                                           prior=prior, n_lesions=1)
                truth = to_rpi(synth.lesion).data > 0
                if not truth.any():
                    continue
                result = segmenters[setup["sct"]].segment(
                    synth.image, setup["scan"], centerline_mask=setup["centerline"])
                mask = to_rpi(result.lesion).data > 0
                probability = to_rpi(result.lesion_probability).data
                increment = to_rpi(synth.image).data - to_rpi(setup["image"]).data
                base = _white_matter(to_rpi(setup["image"]).data, sections, truth)
                rows.append({
                    "scan": setup["scan"], "prior": name, "seed": seed,
                    "volume_mm3": truth.sum() * np.prod(spacing),
                    "peak_ratio": 1 + increment[truth].max() / base,
                    "mean_ratio": 1 + increment[truth].mean() / base,
                    "column": COLUMNS[int(np.bincount(sections.column[truth],
                                                      minlength=3).argmax())],
                    "r": float(sections.r[truth].mean()),
                    "detected": bool((mask & truth).any()),
                    "sct_max_probability": float(probability[truth].max())})
    return pd.DataFrame(rows)


def _white_matter(data: np.ndarray, sections: CrossSections, truth: np.ndarray) -> float:
    slices = np.flatnonzero(truth.any(axis=(0, 1)))
    return float(np.median(data[:, :, slices][sections.outer[:, :, slices]]))


def by_bins(table: pd.DataFrame, column: str, edges, labels) -> pd.DataFrame:
    binned = pd.cut(table[column], edges, labels=labels, right=False)
    grouped = table.groupby(["scan", "prior", binned], observed=True)
    return grouped.agg(lesions=("detected", "size"), detected=("detected", "mean"),
                       sct_p=("sct_max_probability", "median")).reset_index()


def markdown(table: pd.DataFrame, digits: int = 2) -> str:
    head = "| " + " | ".join(map(str, table.columns)) + " |"
    rule = "|" + "---|" * len(table.columns)
    body = ["| " + " | ".join(f"{v:.{digits}f}" if isinstance(v, float) else str(v)
                              for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([head, rule, *body])


def report(real: pd.DataFrame, synthetic: pd.DataFrame) -> str:
    volume_labels = ["< 20", "20–50", "50–100", "≥ 100"]
    contrast_labels = ["< 1.3", "1.3–1.6", "1.6–2.0", "≥ 2.0"]
    overall = synthetic.groupby(["scan", "prior"]).agg(
        lesions=("detected", "size"), detected=("detected", "mean"),
        sct_p=("sct_max_probability", "median"), peak_ratio=("peak_ratio", "median"),
        volume_mm3=("volume_mm3", "median")).reset_index()
    matched = synthetic[(synthetic.scan == "t2_ms") & synthetic.peak_ratio.between(1.4, 2.0)
                        & synthetic.volume_mm3.between(30, 100)
                        & synthetic.column.isin(["lateral", "dorsal"])]
    matched = matched.groupby("prior").agg(lesions=("detected", "size"),
                                           detected=("detected", "mean"),
                                           sct_p=("sct_max_probability", "median")).reset_index()
    return "\n\n".join([
        f"Generated by `recipes/lesion_calibration/calibrate.py` on {datetime.date.today()}.",
        "### Real lesions: SCT's `t2_ax` model on `t2_ms` (one row per lesion and slice)",
        markdown(real), "### SCT's detection of synthetic lesions, each prior",
        markdown(overall), "By volume (mm³):",
        markdown(by_bins(synthetic, "volume_mm3", VOLUME_BINS, volume_labels)),
        "By peak lesion / white-matter ratio:",
        markdown(by_bins(synthetic, "peak_ratio", CONTRAST_BINS, contrast_labels)),
        "By column:",
        markdown(synthetic.groupby(["scan", "prior", "column"]).agg(
            lesions=("detected", "size"), detected=("detected", "mean"),
            sct_p=("sct_max_probability", "median")).reset_index()),
        "Synthetic lesions like `t2_ms`'s real ones (on `t2_ms`; peak ratio 1.4–2.0, 30–100 "
        "mm³, lateral or dorsal column), against the real ones' "
        f"{(real.groupby('lesion').sct_max_probability.max() > 0.5).mean():.0%} detected:",
        markdown(matched)])


def write_readme(generated: str, path: Path) -> None:
    marker = "<!-- generated below by calibrate.py -->"
    text = path.read_text() if path.is_file() else marker + "\n"
    head = text.split(marker)[0]
    path.write_text(f"{head}{marker}\n\n{generated}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=SHARED / "models" / "sct_deepseg")
    parser.add_argument("--images", type=int, default=24, help="synthetic images per prior")
    parser.add_argument("--out", type=Path, default=ROOT / "work" / "calibration")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    real = real_lesions(args.models)
    synthetic = synthetic_detection(args.models, args.images)
    real.to_csv(args.out / "real_lesions.csv", index=False)
    synthetic.to_csv(args.out / "calibration.csv", index=False)
    write_readme(report(real, synthetic), Path(__file__).with_name("README.md"))
    print(report(real, synthetic))


if __name__ == "__main__":
    main()
