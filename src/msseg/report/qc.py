"""Static QC page for a batch of segmentations: per scan an axial mosaic with cord (green) and
lesion (red) contours, a sagittal maximum-intensity projection of the lesions over the middle
sagittal slice, and the lesion table. One ``index.html`` per batch, images beside it."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pandas as pd

from msseg.image import Image
from msseg.preprocess.orient import to_rpi


def scan_figures(name: str, image: Image, cord: Image | None, lesion: Image | None,
                 qcdir: Path) -> list[Path]:
    """Write ``<name>_axial.png`` and ``<name>_sagittal.png`` into ``qcdir`` (a model without
    a cord or lesion output draws none)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    qcdir.mkdir(parents=True, exist_ok=True)
    empty = image.with_data(np.zeros(image.shape, np.uint8))
    img, crd, les = (to_rpi(x if x is not None else empty).data for x in (image, cord, lesion))
    box = _box(crd, img.shape)
    slices = _mosaic_slices(crd, les)
    cols = min(len(slices), 6)
    rows = int(np.ceil(len(slices) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.2 * rows), squeeze=False)
    lo, hi = np.percentile(img, [1, 99.5])
    for ax, k in zip(axes.flat, slices, strict=False):
        ax.imshow(img[box[0], box[1], k].T, cmap="gray", origin="lower", vmin=lo, vmax=hi)
        for mask, colour in ((crd, "lime"), (les, "red")):
            if mask[box[0], box[1], k].any():
                ax.contour(mask[box[0], box[1], k].T, [0.5], colors=colour, linewidths=0.8)
        ax.set_title(f"slice {k}", fontsize=7)
    for ax in axes.flat:
        ax.axis("off")
    fig.tight_layout()
    axial = qcdir / f"{name}_axial.png"
    fig.savefig(axial, dpi=80)
    plt.close(fig)
    sagittal = qcdir / f"{name}_sagittal.png"
    _sagittal(img, crd, les, image, sagittal, lo, hi)
    return [axial, sagittal]


def _box(cord: np.ndarray, shape) -> tuple[slice, slice]:
    hits = np.argwhere(cord)
    if hits.size == 0:
        return slice(None), slice(None)
    lo = np.maximum(hits.min(0)[:2] - 30, 0)
    hi = np.minimum(hits.max(0)[:2] + 31, shape[:2])
    return slice(lo[0], hi[0]), slice(lo[1], hi[1])


def _mosaic_slices(cord: np.ndarray, lesion: np.ndarray, n: int = 12) -> list[int]:
    with_lesion = list(np.flatnonzero(lesion.any(axis=(0, 1))))
    with_cord = np.flatnonzero(cord.any(axis=(0, 1)))
    pool = with_cord if with_cord.size else np.arange(cord.shape[2])
    picks = set(with_lesion[:n])
    for k in np.linspace(pool[0], pool[-1], n).round().astype(int):
        if len(picks) >= n:
            break
        picks.add(int(k))
    return sorted(picks)[::-1]  # superior first


def _sagittal(img, cord, lesion, image: Image, path: Path, lo, hi) -> None:
    import matplotlib.pyplot as plt

    hits = np.argwhere(cord)
    x = int(np.median(hits[:, 0])) if hits.size else img.shape[0] // 2
    rpi = to_rpi(image)
    aspect = rpi.spacing[2] / rpi.spacing[1]
    fig, ax = plt.subplots(figsize=(3.5, 5))
    ax.imshow(img[x].T, cmap="gray", origin="lower", vmin=lo, vmax=hi, aspect=aspect)
    mip = lesion.max(axis=0).T
    ax.imshow(np.ma.masked_where(mip == 0, mip), cmap="autumn", origin="lower", aspect=aspect,
              alpha=0.8)
    ax.set_title("mid-sagittal + lesion MIP", fontsize=8)
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def write_index(qcdir: Path, summary: pd.DataFrame, tables: dict[str, pd.DataFrame]) -> Path:
    """``index.html``: one section per scan of ``summary`` (figures must already exist)."""
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>msseg QC</title>",
             "<style>body{font-family:sans-serif;margin:1em}section{border-top:1px solid #ccc;"
             "padding:.5em 0}img{margin-right:1em;vertical-align:top}table{border-collapse:"
             "collapse;font-size:12px}td,th{border:1px solid #ddd;padding:2px 6px}"
             ".failed{color:#b00}</style></head><body>",
             f"<h1>msseg QC — {len(summary)} scan(s)</h1>",
             _table_html(summary.drop(columns=[c for c in ("error",) if c in summary]))]
    for row in summary.itertuples(index=False):
        name = html.escape(str(row.scan))
        parts.append(f"<section class='scan' id='{name}'><h2>{name}</h2>")
        if row.status == "failed":
            parts.append(f"<p class='failed'>failed: {html.escape(str(row.error))}</p>")
        else:
            for kind in ("axial", "sagittal"):
                if (qcdir / f"{row.scan}_{kind}.png").exists():
                    parts.append(f"<img src='{name}_{kind}.png' alt='{name} {kind}'>")
            parts.append(_table_html(tables.get(row.scan, pd.DataFrame())))
        parts.append("</section>")
    parts.append("</body></html>")
    path = qcdir / "index.html"
    qcdir.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts))
    return path


def _table_html(table: pd.DataFrame) -> str:
    if table.empty:
        return "<p>no lesion</p>"
    return table.round(2).to_html(index=False, border=0)
