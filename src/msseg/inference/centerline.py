"""Stage 1 run through a model: find the cord centerline of a scan with CNN1 (or the intensity
baseline) + optimal path (the geometry itself, model-free, is :mod:`msseg.centerline`).

The image is reoriented to RPI and resampled to CNN1's in-plane spacing (0.5 mm), keeping its
axial slices; the heatmap is CNN1's output on whole slices 40 mm apart, then on squares around
the path through them (:meth:`CenterlineFinder.find`; or
:func:`~msseg.centerline.detect.intensity_heatmap`); the optimal path through its candidates is
one smooth point per axial slice. Points are returned on
that RPI grid and in world mm, so any other grid (the input's, a model's) can use them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from msseg import io
from msseg.centerline.detect import (
    Centerline,
    CenterlineOptions,
    centerline_from_candidates,
    centerline_from_heatmap,
    centerline_mask,
    intensity_heatmap,
    slice_candidates,
)
from msseg.errors import MssegError
from msseg.image import Image, spacing_from_affine
from msseg.models.registry import ModelFolder, find_model
from msseg.models.windows import sigmoid
from msseg.preprocess.orient import to_rpi
from msseg.preprocess.pipeline import NetworkGrid, preprocess_image
from msseg.preprocess.resample import resample_to_spacing

CENTERLINE_TASK = "centerline"   # the bundled CNN1 model
METHODS = ("cnn", "intensity")


class CenterlineFinder:
    def __init__(self, method: str = "cnn", model: ModelFolder | None = None,
                 device: str = "cpu", options: CenterlineOptions | None = None,
                 backend: str = "auto", threads: int = 0):
        if method not in METHODS:
            raise MssegError(f"centerline method {method!r}: must be one of "
                             f"{', '.join(METHODS)}")
        self.method, self.device = method, device
        self.options = options or CenterlineOptions()
        self.model = model
        self.network = None
        if method == "cnn":
            self.model = model or find_model(CENTERLINE_TASK)
            self.network = self.model.network(backend, device, threads)

    def heatmap(self, image: Image) -> tuple[np.ndarray, Image]:
        """Cord probability per voxel on the RPI working grid, and that grid (slices left out
        by ``options.slice_step_mm`` are all zero)."""
        if self.method == "intensity":
            rpi = to_rpi(image)
            grid = resample_to_spacing(rpi, (0.5, 0.5, rpi.spacing[2]), order=1)
            ks = self.options.slices(grid.shape[2], grid.spacing[2])
            heat = np.zeros(grid.shape, np.float32)
            heat[:, :, ks] = intensity_heatmap(grid.data[:, :, ks], grid.spacing)
            return heat, grid
        grid = preprocess_image(image, self.model.plan)
        ks = self.options.slices(grid.shape[2], grid.spacing[2])
        heat = np.zeros(grid.shape, np.float32)
        for j, slice_heat in enumerate(self._slice_heat(grid.data[:, :, ks])):
            heat[:, :, ks[j]] = slice_heat
        return heat, grid

    def _slice_heat(self, slices: np.ndarray):
        """CNN1's probabilities of each preprocessed axial slice of ``slices`` (X, Y, n)."""
        for j in range(slices.shape[2]):
            yield self._heat(slices[:, :, j])

    def _heat(self, plane: np.ndarray) -> np.ndarray:
        """CNN1's probabilities of one preprocessed axial slice (or a part of one). CNN1 is
        fully convolutional: the whole plane at once (zero-padded, centred, to its total stride
        of 4) gives the values of a sliding window without the overlap's repeated work; one
        plane per call was the fastest here."""
        nx, ny = plane.shape
        px, py = (int(np.ceil(n / 4) * 4) for n in (nx, ny))
        x0, y0 = (px - nx) // 2, (py - ny) // 2
        batch = np.zeros((1, 1, px, py), np.float32)
        batch[0, 0, x0:x0 + nx, y0:y0 + ny] = plane
        return sigmoid(self.network(batch)[0, 0, x0:x0 + nx, y0:y0 + ny].copy())

    def find(self, image: Image) -> Centerline:
        """The centerline. CNN1 runs on the slices of ``options.slices``; with
        ``options.coarse_step_mm`` it runs on whole slices that far apart first, and on the
        slices between only inside a square of ``options.window_mm`` around the path through
        those (whole slices again where that path finds no cord): a whole spine costs what
        its cord costs. Only the slices that get a heatmap are preprocessed, and no heatmap
        volume is kept (a whole-spine scan's would be ~0.6 GB)."""
        if self.method == "intensity":
            heat, grid = self.heatmap(image)
            return centerline_from_heatmap(heat, grid, self.options)
        source = NetworkGrid(image, self.model.plan)
        spacing = spacing_from_affine(source.affine)
        coarse, fine = self.options.passes(source.shape[2], spacing[2])
        empty = (np.zeros((0, 2)), np.zeros(0))
        cands = [empty] * source.shape[2]
        for k, slice_heat in zip(coarse, self._slice_heat(source.slices(coarse)), strict=True):
            cands[k] = slice_candidates(slice_heat, tuple(spacing[:2]), self.options)
        if len(fine) == 0:
            return centerline_from_candidates(cands, source.affine, self.options)
        rough = centerline_from_candidates(cands, source.affine, self.options)
        if not rough.found:
            for k, heat in zip(fine, self._slice_heat(source.slices(fine)), strict=True):
                cands[k] = slice_candidates(heat, tuple(spacing[:2]), self.options)
        else:
            self._windowed(source, rough.voxels[fine], fine, cands, spacing)
        return centerline_from_candidates(cands, source.affine, self.options)

    def _windowed(self, source: NetworkGrid, centres: np.ndarray, ks: np.ndarray,
                  cands: list, spacing: np.ndarray) -> None:
        """Candidates of slices ``ks`` from CNN1 on a square of ``options.window_mm`` around
        ``centres`` (in-plane voxels of each slice), written into ``cands``."""
        half = np.round(self.options.window_mm / 2 / spacing[:2]).astype(int)
        limit = np.asarray(source.shape[:2])
        lo = np.clip(np.round(centres).astype(int) - half, 0, np.maximum(limit - 2 * half, 0))
        hi = np.minimum(lo + 2 * half, limit)
        union = (slice(int(lo[:, 0].min()), int(hi[:, 0].max())),
                 slice(int(lo[:, 1].min()), int(hi[:, 1].max())))
        planes = source.slices(ks, union)
        origin = np.array([union[0].start, union[1].start])
        for j, k in enumerate(ks):
            a, b = lo[j] - origin, hi[j] - origin
            heat = self._heat(planes[a[0]:b[0], a[1]:b[1], j])
            points, scores = slice_candidates(heat, tuple(spacing[:2]), self.options)
            cands[k] = (points + lo[j], scores)


def finder_for(options) -> CenterlineFinder:
    """Stage 1 as a run's options (:class:`~msseg.inference.options.SegmentOptions`) ask."""
    return CenterlineFinder(options.centerline, device=options.device,
                            options=CenterlineOptions(slice_step_mm=options.centerline_step_mm),
                            backend=options.backend, threads=options.threads)


def centerline_table(line: Centerline):
    """One row per axial slice (RPI slice index, inferior first): world x, y, z in mm."""
    import pandas as pd

    world = line.world()
    return pd.DataFrame({"slice": np.arange(len(world)), "x": world[:, 0], "y": world[:, 1],
                         "z": world[:, 2], "detected": line.detected})


def write_centerline(line: Centerline, image: Image, outdir: Path, stem: str
                     ) -> tuple[Path, Path]:
    """``stem_centerline.csv`` and ``stem_centerline.nii.gz`` (one voxel per slice, the
    input's grid and header)."""
    outdir.mkdir(parents=True, exist_ok=True)
    csv = io.write_csv(centerline_table(line).round(4), outdir / f"{stem}_centerline.csv")
    nii = io.save_like(centerline_mask(line, image), image, outdir / f"{stem}_centerline.nii.gz")
    return csv, nii
