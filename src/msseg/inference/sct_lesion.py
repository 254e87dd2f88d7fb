"""SCT's released lesion models (``sct_deepseg_lesion``) run by msseg, with SCT's values.

Design notes: docs/explanation/design-notes.md#msseginferencesct_lesion.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from msseg.centerline.detect import Centerline
from msseg.errors import MssegError
from msseg.image import Image, bounding_box
from msseg.inference.finish import finish
from msseg.inference.options import SegmentOptions, SegmentResult, check_image
from msseg.models.sct import SctModel
from msseg.preprocess import sct
from msseg.preprocess.orient import reorient_like, to_rpi


@dataclass(frozen=True)
class SctPlan:
    """What the outputs' records and sidecars read of a model: SCT's final threshold, no
    minimum lesion volume (SCT removes nothing)."""
    threshold: float = sct.THRESHOLD
    min_lesion_volume_mm3: float | None = None


class SctGrid:
    """SCT's 0.5 × 0.5 mm × pz RPI grid of an image (the sampling rule of
    :func:`msseg.preprocess.sct.sample`)."""

    def __init__(self, rpi: Image):
        self.native_shape = rpi.shape
        self.zooms = sct.header_zooms(rpi.affine)
        self.shape = sct.grid_shape(rpi.shape, self.zooms, (sct.INPLANE_MM, sct.INPLANE_MM,
                                                            None))
        self.factor = tuple(n / m for n, m in zip(rpi.shape, self.shape, strict=True))
        self.affine = rpi.affine @ np.diag([*self.factor, 1.0])
        back = sct.grid_shape(self.shape, sct.header_zooms(self.affine),
                              tuple(sct.zooms_string(z) for z in self.zooms))
        # SCT goes back by voxel size; that recovers the native shape (else: the native grid)
        self.back = tuple(m / n for m, n in zip(self.shape, back if back == rpi.shape
                                                else rpi.shape, strict=True))


class SctLesionSegmenter:
    """``sct_deepseg_lesion`` with one of SCT's released CNN2 models."""

    def __init__(self, model: SctModel, options: SegmentOptions | None = None):
        if model.kind != "lesion":
            raise MssegError(f"{model.path}: an SCT centerline (CNN1) model; segment with an "
                             "SCT lesion model (sct_lesion_t2_ax, sct_lesion_t2s…)")
        options = options or SegmentOptions()
        self.model, self.options = model, options
        self.plan = SctPlan()
        self.contrast = sct.CONTRASTS[model.contrast]
        self.network = model.main.network(options.backend, options.device, options.threads)
        self._cnn1 = None     # made on first use (not at all with centerline files)
        self._finder = None

    def segment(self, image: Image, name: str = "image",
                centerline_mask: Image | None = None) -> SegmentResult:
        start = time.perf_counter()
        check_image(image, name)
        rpi = to_rpi(image, copy=False)
        grid = SctGrid(rpi)
        if centerline_mask is not None:
            centres = file_centres(centerline_mask, image, grid, name)
        else:
            centres = self._auto_centres(image, rpi, grid)
        line = _as_centerline(centres, grid)
        soft = self.predict(rpi, grid, centres)
        native = reorient_like(rpi.with_data(soft), image).data
        threshold = sct.THRESHOLD if self.options.threshold is None else self.options.threshold
        masks = {"lesion": native >= threshold}
        config = self.options.postprocess if self.options.postprocessing else None
        mask_images, prob_images, table = finish(image, {"lesion": native}, masks, config)
        return SegmentResult(mask_images, prob_images, table, time.perf_counter() - start,
                             None, line)

    def predict(self, rpi: Image, grid: SctGrid, centres: dict) -> np.ndarray:
        """The soft lesion map on the RPI native grid (float32; SCT's ``_RPI_seg``)."""
        out = np.zeros(rpi.shape, np.float32)
        if not centres:
            return out
        crop, starts = crop_stack(rpi.data, grid, centres)
        seg2d = self.crop_probabilities(crop, grid)
        for z, (x0, y0) in starts.items():
            box, values = crop_to_native(seg2d[:, :, z], x0, y0, grid)
            out[box[0], box[1], z] = values
        return out

    def crop_probabilities(self, crop: np.ndarray, grid: SctGrid) -> np.ndarray:
        """Crop stack (48, 48, nz) -> SCT's soft map back on the crop's slices (float64)."""
        norm = sct.nyul(crop, self.contrast.landmarks)
        volume, n3d = resample_crop_3d(norm, grid)
        prob, starts = self.run_cnn2(volume)
        seg3d = sct.unchunk(prob, starts, n3d)
        return resample_crop_back(seg3d, grid, crop.shape[2])

    def run_cnn2(self, volume: np.ndarray) -> tuple[np.ndarray, list[int]]:
        """CNN2's sigmoid on every non-empty chunk of a normalised 0.5 mm crop volume
        (``(n, 1, 48, 48, 48)``), and the chunks' z starts. One session, one chunk per call
        by default (``batch_size``): all five chunks of ``t2_ms`` in one call took 3.8 s and
        800 MB here, one at a time 3.2 s and 385 MB."""
        batch, starts = sct.chunks(volume, self.contrast.mean, self.contrast.std)
        if not len(batch):
            return batch, starts
        size = self.options.batch_size or 1
        return np.concatenate([self.network(batch[i:i + size])
                               for i in range(0, len(batch), size)]), starts

    def _auto_centres(self, image: Image, rpi: Image, grid: SctGrid) -> dict:
        centres = {}
        if self.model.centerline is not None:
            if self._cnn1 is None:
                self._cnn1 = self.model.centerline.network(
                    self.options.backend, self.options.device, self.options.threads)
            centres = cnn1_centres(rpi, grid, self._cnn1, self.model.centerline_contrast)
        if not centres:   # CNN1 found no cord (or there is none): msseg's own stage 1
            centres = self._msseg_centres(image, grid)
        return centres

    def _msseg_centres(self, image: Image, grid: SctGrid) -> dict:
        from msseg.inference.centerline import finder_for

        if self._finder is None:
            self._finder = finder_for(self.options)
        line = self._finder.find(image)
        if not line.found:
            return {}
        world = line.world()
        ijk = np.linalg.inv(grid.affine) @ np.column_stack([world, np.ones(len(world))]).T
        return {int(round(k)): (float(x), float(y)) for x, y, k in ijk[:3].T
                if 0 <= round(k) < grid.shape[2]}


def file_centres(mask: Image, image: Image, grid: SctGrid, name: str) -> dict:
    """SCT's ``-centerline file``: the file in RPI, linearly resampled to the 0.5 mm grid,
    value-weighted centre of mass per slice. The file must lie on the input's grid."""
    if mask.shape != image.shape or not np.allclose(mask.affine, image.affine, atol=1e-3):
        raise MssegError(f"{name}: the centerline file is not on the image's grid (shape "
                         f"{mask.shape} vs {image.shape}); bring it to the image's space first")
    data = to_rpi(mask, copy=False).data
    if not np.any(data):
        raise MssegError(f"{name}: the centerline file is empty")
    found = bounding_box(data != 0)
    box = tuple(_output_range(b, f, n) for b, f, n in zip(found, grid.factor, grid.shape,
                                                            strict=True))
    part = sct.sample(data, grid.factor, grid.shape, box)
    centres = sct.centres_of_mass(part)
    return {z + box[2].start: (x + box[0].start, y + box[1].start)
            for z, (x, y) in centres.items()}


def _output_range(found: slice, factor: float, n_out: int) -> slice:
    """Output voxels whose sampling position lies within one input voxel of ``found`` (every
    other one interpolates zeros only)."""
    lo = int(np.floor((found.start - 1) / factor)) + 1
    hi = int(np.ceil(found.stop / factor))
    return slice(max(lo, 0), min(max(hi, lo + 1), n_out))


def cnn1_centres(rpi: Image, grid: SctGrid, network, contrast: str) -> dict:
    """SCT's CNN1 on the 0.5 mm grid (computed slice by slice in float64, kept in float32, as
    SCT casts it), then msseg's optimal path; per slice below ``z_max``."""
    from msseg.centerline.sct_cnn1 import centerline_from_cnn1, sct_heatmap

    volume = np.zeros(grid.shape, np.float32)
    for z in range(grid.shape[2]):
        box = (slice(0, grid.shape[0]), slice(0, grid.shape[1]), slice(z, z + 1))
        volume[:, :, z] = sct.sample(rpi.data, grid.factor, grid.shape, box, np.float32)[..., 0]
    mean, std = sct.CNN1_NORMALISATION[contrast]
    result = sct_heatmap(volume, network, mean, std, brain=True)
    if not result.found:
        return {}
    line = centerline_from_cnn1(result, grid.affine)
    top = grid.shape[2] if result.z_max is None else result.z_max
    return {z: (float(line.voxels[z, 0]), float(line.voxels[z, 1])) for z in range(top)
            if not np.isnan(line.voxels[z]).any()}


def crop_stack(data: np.ndarray, grid: SctGrid, centres: dict
               ) -> tuple[np.ndarray, dict[int, tuple[int, int]]]:
    """The 48 × 48 crop of every slice with a centerline (float32; zero elsewhere and past
    the grid), sampled from the native RPI data at those voxels only, and the crop starts."""
    crop = np.zeros((sct.CROP, sct.CROP, grid.shape[2]), np.float32)
    starts = {}
    for z, (cx, cy) in sorted(centres.items()):
        x0 = sct.crop_start(cx, sct.CROP, grid.shape[0])
        y0 = sct.crop_start(cy, sct.CROP, grid.shape[1])
        box = (slice(x0, min(x0 + sct.CROP, grid.shape[0])),
               slice(y0, min(y0 + sct.CROP, grid.shape[1])), slice(z, z + 1))
        values = sct.sample(data, grid.factor, grid.shape, box)[..., 0]
        crop[:values.shape[0], :values.shape[1], z] = values.astype(np.float32)
        starts[z] = (x0, y0)
    return crop, starts


def resample_crop_3d(norm: np.ndarray, grid: SctGrid) -> tuple[np.ndarray, int]:
    """The normalised crop at 0.5 mm along z (SCT's ``_resampled3d``; in-plane kept at 48)."""
    zoom_z = sct.header_zooms(grid.affine)[2]
    n3d = sct.grid_shape((norm.shape[2],), (zoom_z,), (0.5,))[0]
    volume = sct.sample(norm, (1.0, 1.0, norm.shape[2] / n3d), (*norm.shape[:2], n3d),
                        dtype=np.float32)
    return volume, n3d


def resample_crop_back(seg3d: np.ndarray, grid: SctGrid, nz: int) -> np.ndarray:
    """CNN2's 0/1 map back to the crop's slices (linear: soft values; SCT's
    ``_resampled2d``), by SCT's voxel-size rule."""
    zoom = sct.zooms_string(grid.zooms[2])
    back = sct.grid_shape((seg3d.shape[2],), (float(np.float32(0.5)),), (zoom,))[0]
    if back != nz:
        raise MssegError(f"SCT's grid rule gives {back} slices back for {nz}; slice thickness "
                         f"{zoom} mm is not supported")
    return sct.sample(seg3d, (1.0, 1.0, seg3d.shape[2] / nz), (*seg3d.shape[:2], nz))


def crop_to_native(patch: np.ndarray, x0: int, y0: int, grid: SctGrid
                   ) -> tuple[tuple[slice, slice], np.ndarray]:
    """One slice's crop values (uncropped into the 0.5 mm grid, zero elsewhere) on the
    native grid: the native voxels whose sampling position can see the crop, and their
    values (linear, edges clamped; float32)."""
    nx, ny = grid.shape[:2]
    lo = (max(x0 - 1, 0), max(y0 - 1, 0))
    hi = (min(x0 + sct.CROP + 1, nx), min(y0 + sct.CROP + 1, ny))
    part = np.zeros((hi[0] - lo[0], hi[1] - lo[1]))
    w = (min(sct.CROP, nx - x0), min(sct.CROP, ny - y0))
    part[x0 - lo[0]:x0 - lo[0] + w[0], y0 - lo[1]:y0 - lo[1] + w[1]] = patch[:w[0], :w[1]]
    ranges = []
    for a in range(2):
        i = np.arange(grid.native_shape[a])
        pos = i * grid.back[a]
        keep = (pos >= lo[a]) & ((pos <= hi[a] - 1) | (hi[a] == grid.shape[a]))
        index = i[keep]
        ranges.append((slice(int(index[0]), int(index[-1]) + 1) if len(index) else
                       slice(0, 0), pos[keep] - lo[a]))
    if not all(len(r[1]) for r in ranges):
        return (slice(0, 0), slice(0, 0)), np.zeros((0, 0), np.float32)
    values = sct.linear_at(part, [ranges[0][1], ranges[1][1]])
    return (ranges[0][0], ranges[1][0]), values.astype(np.float32)


def _as_centerline(centres: dict, grid: SctGrid) -> Centerline:
    """The centres used for the crops as an msseg centerline on the 0.5 mm RPI grid."""
    voxels = np.full((grid.shape[2], 2), np.nan)
    for z, c in centres.items():
        voxels[z] = c
    return Centerline(voxels, ~np.isnan(voxels).any(axis=1), grid.affine)
