"""QC page for a batch of segmentations, one ``index.html`` with the images beside it: per scan
an axial mosaic with cord (green) and lesion (red) contours (and the same mosaic without them),
a sagittal maximum-intensity projection of the lesions over the middle sagittal slice, and the
lesion table.

Design notes: docs/explanation/design-notes.md#mssegreportqc.
"""

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
    for ax in axes.flat:   # the same mosaic without the contours (overlay toggle)
        for artist in [*ax.collections]:
            artist.remove()
    fig.savefig(qcdir / f"{name}_axial_plain.png", dpi=80)
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


PAGE_SIZE = 50

STYLE = """body{font-family:sans-serif;margin:1em}section{border-top:1px solid #ccc;
padding:.5em 0}section.current{background:#eef5ff}img{margin-right:1em;vertical-align:top}
table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ddd;padding:2px 6px}
.failed{color:#b00}.rating{font-weight:bold;margin-left:1em}.r-pass{color:#080}
.r-fail{color:#b00}.r-artefact{color:#a60}header{position:sticky;top:0;background:#fff;
padding:.3em 0;border-bottom:1px solid #999;z-index:1}kbd{border:1px solid #aaa;
border-radius:3px;padding:0 3px}"""

SCRIPT = """
const KEY = 'msseg-qc:' + location.pathname;
const sections = [...document.querySelectorAll('section.scan')];
const PAGE = %(page)d;
let marks = JSON.parse(localStorage.getItem(KEY) || '{}');
let current = 0, overlays = true;
function save() { localStorage.setItem(KEY, JSON.stringify(marks)); }
function page() { return Math.floor(current / PAGE); }
function render() {
  const p = page(), pages = Math.max(1, Math.ceil(sections.length / PAGE));
  sections.forEach((s, i) => {
    s.style.display = Math.floor(i / PAGE) === p ? '' : 'none';
    s.classList.toggle('current', i === current);
    const m = marks[s.dataset.scan];
    const label = s.querySelector('.rating');
    label.textContent = m ? m.rating : 'not rated';
    label.className = 'rating' + (m ? ' r-' + m.rating : '');
    s.querySelectorAll('img.axial').forEach(img => {
      img.src = overlays ? img.dataset.overlay : img.dataset.plain; });
  });
  const counts = {pass: 0, fail: 0, artefact: 0};
  Object.values(marks).forEach(m => counts[m.rating]++);
  document.getElementById('counts').textContent =
    `pass ${counts.pass} · fail ${counts.fail} · artefact ${counts.artefact} · ` +
    `unrated ${sections.length - Object.keys(marks).length}`;
  document.getElementById('page').textContent = `page ${p + 1} / ${pages}`;
}
function go(i) {
  current = Math.max(0, Math.min(sections.length - 1, i));
  render();
  sections[current].scrollIntoView({block: 'nearest'});
}
function mark(rating, i = current) {
  const scan = sections[i].dataset.scan;
  if (rating) { marks[scan] = {rating: rating, time: new Date().toISOString()}; }
  else { delete marks[scan]; }
  save(); render();
}
function exportCsv() {
  const rows = ['scan,rating,time'];
  sections.forEach(s => { const m = marks[s.dataset.scan];
    if (m) rows.push([s.dataset.scan, m.rating, m.time].map(v => '"' +
      String(v).replace(/"/g, '""') + '"').join(',')); });
  const a = document.createElement('a');
  a.href = URL.createObjectURL(new Blob([rows.join('\\n') + '\\n'], {type: 'text/csv'}));
  a.download = 'qc_ratings.csv';
  document.body.appendChild(a); a.click(); a.remove();
}
const KEYS = {'1': 'pass', 'p': 'pass', '2': 'fail', 'f': 'fail', '3': 'artefact',
              'a': 'artefact'};
document.addEventListener('keydown', e => {
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  if (e.key in KEYS) mark(KEYS[e.key]);
  else if (e.key === '0') mark(null);
  else if (e.key === 'j' || e.key === 'ArrowDown') go(current + 1);
  else if (e.key === 'k' || e.key === 'ArrowUp') go(current - 1);
  else if (e.key === 'ArrowRight') go((page() + 1) * PAGE);
  else if (e.key === 'ArrowLeft') go((page() - 1) * PAGE);
  else if (e.key === 'o') { overlays = !overlays; render(); }
  else return;
  e.preventDefault();
});
sections.forEach((s, i) => {
  s.addEventListener('click', () => { current = i; render(); });
  s.querySelectorAll('button[data-rating]').forEach(b => b.addEventListener('click',
    ev => { ev.stopPropagation(); current = i; mark(b.dataset.rating || null); }));
});
document.getElementById('export').addEventListener('click', exportCsv);
document.getElementById('toggle').addEventListener('click', () => {
  overlays = !overlays; render(); });
render();
"""


def write_index(qcdir: Path, summary: pd.DataFrame, tables: dict[str, pd.DataFrame],
                page_size: int = PAGE_SIZE) -> Path:
    """``index.html``: one section per scan of ``summary`` (figures must already exist), the
    rating controls and their script (see module)."""
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>msseg QC</title>",
             f"<style>{STYLE}</style></head><body>",
             f"<header><h1>msseg QC — {len(summary)} scan(s)</h1>",
             "<p><span id='counts'></span> · <span id='page'></span> · "
             "<button id='export'>Export ratings (CSV)</button> "
             "<button id='toggle'>Overlays on/off (o)</button><br>keys: <kbd>j</kbd>/"
             "<kbd>k</kbd> next/previous scan, <kbd>1</kbd> pass, <kbd>2</kbd> fail, "
             "<kbd>3</kbd> artefact, <kbd>0</kbd> clear, <kbd>o</kbd> overlays, "
             "<kbd>→</kbd>/<kbd>←</kbd> next/previous page</p></header>",
             "<details><summary>all scans</summary>",
             _table_html(summary.drop(columns=[c for c in ("error",) if c in summary])),
             "</details>"]
    for row in summary.itertuples(index=False):
        name = html.escape(str(row.scan))
        parts.append(f"<section class='scan' id='{name}' data-scan='{name}'><h2>{name}"
                     "<span class='rating'></span></h2><p>"
                     + "".join(f"<button data-rating='{r}'>{label}</button> " for r, label in (
                         ("pass", "pass (1)"), ("fail", "fail (2)"),
                         ("artefact", "artefact (3)"), ("", "clear (0)"))) + "</p>")
        if row.status == "failed":
            parts.append(f"<p class='failed'>failed: {html.escape(str(row.error))}</p>")
        else:
            if (qcdir / f"{row.scan}_axial.png").exists():
                parts.append(f"<img class='axial' loading='lazy' src='{name}_axial.png' "
                             f"data-overlay='{name}_axial.png' "
                             f"data-plain='{name}_axial_plain.png' alt='{name} axial'>")
            if (qcdir / f"{row.scan}_sagittal.png").exists():
                parts.append(f"<img loading='lazy' src='{name}_sagittal.png' "
                             f"alt='{name} sagittal'>")
            parts.append(_table_html(tables.get(row.scan, pd.DataFrame())))
        parts.append("</section>")
    parts.append(f"<script>{SCRIPT % {'page': max(1, page_size)}}</script></body></html>")
    path = qcdir / "index.html"
    qcdir.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts))
    return path


def _table_html(table: pd.DataFrame) -> str:
    if table.empty:
        return "<p>no lesion</p>"
    return table.round(2).to_html(index=False, border=0)
