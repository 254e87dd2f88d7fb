"""Make the documentation's pictures from ``../shared/data`` (``make docs`` runs this; they are
not committed): a segmentation overlay and the QC page of the real MS patient ``t2_ms``, a
raincloud of ``msseg stats``, CSA per vertebral level from ``msseg morphometry``, and a
stitching before and after. Each is made
by the commands a user runs, so the pictures show what msseg does today.

Without ``../shared/data`` (or without chromium, for the QC page) a picture is replaced by a
placeholder that says so, and the build still passes. Run:
``.venv/bin/python tools/docs_pictures.py [--work DIR]``.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
OUT = ROOT / "docs" / "assets" / "generated"
T2_MS = SHARED / "spine/ms_patient_unlabelled/t2_ms/t2.nii.gz"
UNF = SHARED / "spine/ivadomed_unf"
T2 = SHARED / "spine/sct_testing_data/t2"


def msseg(*argv: str) -> None:
    from msseg.cli.main import main

    code = main([str(a) for a in argv])
    if code != 0:
        raise RuntimeError(f"msseg {' '.join(map(str, argv))} exited {code}")


def placeholder(name: str, why: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 1.5))
    ax.axis("off")
    ax.text(0.5, 0.5, f"picture not made here: {why}", ha="center", va="center", fontsize=11)
    fig.savefig(OUT / name, dpi=100)
    plt.close(fig)


def overlay(work: Path) -> None:
    """Axial slices of t2_ms with msseg's cord (green) and lesion (red) contours."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from msseg import io

    folder = work / "t2_ms"
    msseg("segment", "lesion_ms_axial_t2", "-i", T2_MS, "-o", folder, "--qc", folder / "qc")
    image = io.load(T2_MS).data
    cord = io.load(folder / "t2_label-SC_seg.nii.gz").data > 0
    lesion = io.load(folder / "t2_label-lesion_seg.nii.gz").data > 0
    slices = np.argsort(lesion.sum(axis=(0, 1)))[::-1][:3]
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.4))
    for ax, k in zip(axes, sorted(slices), strict=True):
        rows, cols = np.nonzero(cord[:, :, k])
        r0, r1 = max(rows.min() - 25, 0), rows.max() + 25
        c0, c1 = max(cols.min() - 25, 0), cols.max() + 25
        ax.imshow(image[r0:r1, c0:c1, k].T, cmap="gray", origin="lower")
        ax.contour(cord[r0:r1, c0:c1, k].T, levels=[0.5], colors="lime", linewidths=1.2)
        if lesion[r0:r1, c0:c1, k].any():
            ax.contour(lesion[r0:r1, c0:c1, k].T, levels=[0.5], colors="red", linewidths=1.2)
        ax.set_title(f"axial slice {k}", fontsize=12)
        ax.axis("off")
    fig.suptitle("t2_ms (real MS patient): cord in green, lesions in red", fontsize=13)
    fig.tight_layout()
    fig.savefig(OUT / "overlay.png", dpi=110)
    plt.close(fig)
    qc_page(folder / "qc")


def qc_page(folder: Path) -> None:
    """A screenshot of the QC page in headless chromium."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        placeholder("qc_page.png", "chromium and chromedriver are not installed")
        return
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    profile = tempfile.mkdtemp()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,900", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    chrome = webdriver.Chrome(service=Service(driver), options=options)
    try:
        chrome.get((folder / "index.html").as_uri())
        chrome.implicitly_wait(2)
        chrome.save_screenshot(str(OUT / "qc_page.png"))
    finally:
        chrome.quit()
        shutil.rmtree(profile, ignore_errors=True)


def raincloud(work: Path) -> None:
    """Cord Dice of two bundled tasks against the manual masks of sub-unf01 (three contrasts),
    compared by ``msseg stats``."""
    images = [UNF / "sub-unf01/anat" / f"sub-unf01_{c}.nii.gz" for c in ("T1w", "T2w", "T2star")]
    refs = UNF / "derivatives/labels/sub-unf01/anat"
    csvs = []
    for task in ("lesion_ms_axial_t2", "sc_2stage"):
        out = work / task
        msseg("segment", task, "-i", *images, "-o", out)
        csv = work / f"{task}.csv"
        msseg("evaluate", "-p", out, "-r", refs, "--structure", "cord", "-o", csv)
        csvs.append(csv)
    msseg("stats", *csvs, "--metric", "dice", "--paired", "--plot", OUT / "raincloud.png")


def csa_levels(work: Path) -> None:
    msseg("morphometry", "-s", T2 / "t2_seg-manual.nii.gz", "--levels",
          T2 / "t2_seg-manual_labeled.nii.gz", "--per-level", "-o", work / "csa.csv",
          "--plot", OUT / "csa_levels.png")


def stitching(work: Path) -> None:
    """errsm_24's long sagittal T2w cut into two overlapping chunks (the upper one darker,
    as from another coil), stitched back by ``msseg stitch``: both chunks and the result."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from msseg import io

    whole = io.load(SHARED / "spine/sct_2014_testing/errsm_24/t2/t2.nii.gz")   # P, S, R
    chunks = []
    for i, (first, stop, gain) in enumerate(((0, 130, 1.0), (100, 225, 0.7))):
        part = whole.crop((slice(None), slice(first, stop), slice(None)))
        path = work / f"errsm_24_chunk-{i + 1}_T2w.nii.gz"
        io.save(part.with_data((part.data * gain).astype("float32")), path)
        chunks.append(path)
    out = work / "errsm_24_T2w_stitched.nii.gz"
    msseg("stitch", *chunks, "-o", out)
    middle = whole.shape[2] // 2
    pictures = [io.load(c).data[:, :, middle] for c in chunks] + [io.load(out).data]
    fig, axes = plt.subplots(1, 3, figsize=(9, 5.6))
    titles = ("chunk 1 (lower)", "chunk 2 (upper, darker)", "msseg stitch")
    top = whole.shape[1]
    offsets = (0, 100, 0)
    for ax, data, title, offset in zip(axes, pictures, titles, offsets, strict=True):
        plane = (data if data.ndim == 2 else data[:, :, data.shape[2] // 2])[140:330]
        # P along x, S up; each chunk drawn at its own height in the field of view
        ax.imshow(plane.T, cmap="gray", origin="lower", vmin=0,
                  vmax=float(np.percentile(whole.data, 99.5)),
                  extent=(0, plane.shape[0], offset, offset + plane.shape[1]))
        ax.set_ylim(0, top)
        ax.set_title(title, fontsize=13)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(OUT / "stitching.png", dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    shutil.rmtree(OUT, ignore_errors=True)      # made afresh: no output is ever overwritten
    OUT.mkdir(parents=True)
    work = args.work or Path(tempfile.mkdtemp(prefix="msseg-docs-"))
    makers = {"overlay.png": overlay, "raincloud.png": raincloud, "csa_levels.png": csa_levels,
              "stitching.png": stitching}
    for name, make in makers.items():
        if not SHARED.is_dir():
            placeholder(name, "../shared/data is absent")
            if name == "overlay.png":
                placeholder("qc_page.png", "../shared/data is absent")
            continue
        make(work)
    shutil.copy(ROOT / "docs" / "lesion_ms_dataset_sankey.png", OUT / "sankey.png")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    print(f"pictures in {OUT}")


if __name__ == "__main__":
    main()
