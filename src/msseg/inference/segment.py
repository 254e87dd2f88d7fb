"""`msseg segment`'s pipeline for one image, crop-accelerated by the stage-1 centerline.

load -> find the cord centerline (stage 1: CNN1 heatmap + optimal path, :mod:`msseg.centerline`)
-> reorient to RPI -> resample (in-plane only for 2D models, 0.5 mm isotropic for the two-stage
3D models) -> normalise as the model was trained -> either crop a box around the centerline
(its extent + ``crop_margin_mm`` + the cord's half-width, aligned on the whole image's window
grid) or, for models trained on patches along the centerline (``plan.frame == "centerline"``),
cut the tube of windows that follows it -> sliding-window prediction with Gaussian blending
(optionally with left-right mirroring, ``tta``) -> put back into the full grid ->
probabilities resampled back onto the input's grid -> threshold -> post-processing (lesions
restricted to the dilated cord, small components removed) -> masks with the input's header.
Without a centerline (``--no-crop``, or no cord found) box models predict the whole image.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import pandas as pd
import torch

from msseg.errors import MssegError
from msseg.image import Image
from msseg.inference.predict import predict_probabilities
from msseg.lesions import lesion_table
from msseg.models.registry import ModelFolder
from msseg.postprocess import PostprocessConfig, postprocess
from msseg.preprocess.orient import reorient_like, to_rpi
from msseg.preprocess.resample import resample_to_grid
from msseg.preprocess.tube import Tube, centres_on_grid
from msseg.training.data import preprocess_image, tube_box

MAX_OBLIQUITY_DEG = 30.0
#: Interpolation order bringing probabilities back to the input grid, per plan frame: cubic
#: for slices resized to the patch (linear loses up to 4% of thin lesions' volume there).
BACK_ORDER = {"image": 1, "centerline": 1, "resize": 3}
CORD_HALF_WIDTH_MM = 10.0   # the crop box reaches this far beyond the centerline, plus margin


@dataclass(frozen=True)
class SegmentOptions:
    threshold: float = 0.5
    crop: bool = True
    tta: bool = False
    device: str = "cpu"
    backend: str = "torch"  # torch | onnx
    crop_margin_mm: float = 20.0
    centerline: str = "cnn"     # cnn | intensity: how stage 1 finds the cord
    centerline_step_mm: float = 5.0  # stage-1 heatmap on slices this far apart (0: all)
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SegmentResult:
    cord: Image                # uint8, native grid and header
    lesion: Image
    lesion_probability: Image  # float32 in [0, 1]
    table: pd.DataFrame
    seconds: float
    crop_box: tuple | None     # in the network grid (RPI, model spacing)
    centerline: object = None  # msseg.centerline.detect.Centerline (None: not computed)


def check_image(image: Image, name: str) -> None:
    """Refuse inputs the pipeline cannot segment meaningfully, naming the file."""
    if min(image.shape) < 2:
        raise MssegError(f"{name}: image has shape {image.shape}; need at least 2 voxels "
                         "along every axis (a single slice cannot be segmented in 3D context)")
    if image.data.min() == image.data.max():  # (np.ptp can overflow on int16)
        raise MssegError(f"{name}: image is empty (all voxels equal {image.data.flat[0]:g})")
    angle = obliquity_deg(image.affine)
    if angle > MAX_OBLIQUITY_DEG:
        raise MssegError(f"{name}: affine is {angle:.0f}° oblique to the scanner axes (max "
                         f"{MAX_OBLIQUITY_DEG:.0f}°); reslice it to the nearest axes first")


def obliquity_deg(affine: np.ndarray) -> float:
    """Largest angle between a voxel axis and its nearest world axis."""
    axes = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    return float(np.degrees(np.arccos(np.clip(np.abs(axes).max(axis=0), 0, 1))).max())


class Segmenter:
    def __init__(self, model: ModelFolder, options: SegmentOptions = SegmentOptions()):
        from msseg.centerline.detect import CenterlineOptions
        from msseg.centerline.finder import CENTERLINE_TASK, CenterlineFinder

        if model.task == CENTERLINE_TASK:
            raise MssegError(f"{model.path.name}: a stage-1 centerline model; use "
                             "`msseg centerline` (segment tasks: msseg segment --list)")
        self.model, self.options = model, options
        self.plan = model.plan
        self.network = model.load_network(options.device)
        self.finder = None
        if self.plan.frame != "resize" and (options.crop or self.plan.frame == "centerline"):
            self.finder = CenterlineFinder(options.centerline, device=options.device,
                                           options=CenterlineOptions(
                                               slice_step_mm=options.centerline_step_mm))
        if options.backend == "onnx":
            from msseg.inference.onnx_backend import OnnxNetwork

            self.network = OnnxNetwork(self.network, self.plan.patch_size)
        elif options.backend != "torch":
            raise MssegError(f"--backend {options.backend!r}: must be torch or onnx")

    def _predict(self, volume: np.ndarray, overlap: float = 0.5) -> np.ndarray:
        prob = predict_probabilities(self.network, volume, self.plan, overlap=overlap,
                                     device=self.options.device)
        if self.options.tta:
            flipped = predict_probabilities(self.network, volume[::-1].copy(), self.plan,
                                            overlap=overlap, device=self.options.device)
            prob = (prob + flipped[:, ::-1]) / 2
        return prob

    def box(self, work: Image, world: np.ndarray) -> tuple[slice, ...]:
        """In-plane box of the work grid around the centerline points (world mm)."""
        ijk = (np.linalg.inv(work.affine) @ np.column_stack([world, np.ones(len(world))]).T)
        margin_mm = self.options.crop_margin_mm + CORD_HALF_WIDTH_MM
        margin = np.ceil(margin_mm / np.asarray(work.spacing[:2])).astype(int)
        lo = np.floor(ijk[:2].min(1)).astype(int) - margin
        hi = np.ceil(ijk[:2].max(1)).astype(int) + margin + 1
        return (*(_aligned(lo[a], hi[a], self.plan.patch_size[a], work.shape[a])
                  for a in range(2)), slice(None))

    def _regions(self, prob: np.ndarray) -> list[np.ndarray | None]:
        """(cord, lesion) probabilities; None for a region the model does not output."""
        named = dict(zip(self.plan.regions, prob, strict=True))
        return [named.get(r) for r in ("cord", "lesion")]

    def _tube_predict(self, work: Image, world: np.ndarray) -> np.ndarray:
        tube = Tube.around(centres_on_grid(world, work.affine, work.shape[2]),
                           tuple(self.plan.patch_size[:2]))
        cut = tube.extract(work.data, float(work.data.min()))
        return tube.paste(self._predict(cut), work.shape, 0.0)

    def segment(self, image: Image, name: str = "image") -> SegmentResult:
        start = time.perf_counter()
        check_image(image, name)
        line = self.finder.find(image) if self.finder is not None else None
        world = line.world() if line is not None and line.found else None
        rpi = to_rpi(image)
        keep = None   # RPI voxel box the network grid covers (None: the whole image)
        if self.plan.frame == "centerline" and world is not None:
            points = (np.linalg.inv(rpi.affine) @ np.column_stack(
                [world, np.ones(len(world))]).T)[:2].T
            keep = tube_box(points, rpi, self.plan)
        work = preprocess_image(image, self.plan, keep)
        box = None
        with torch.inference_mode():
            if self.plan.frame == "centerline":
                prob = (self._tube_predict(work, world) if world is not None else
                        np.zeros((len(self.plan.regions), *work.shape), np.float32))
            elif world is None or not self.options.crop:
                prob = self._predict(work.data)
                if self.plan.frame == "resize":  # slices without brain (all zero) stay empty
                    prob[..., ~(work.data != 0).any(axis=(0, 1))] = 0
            else:
                box = self.box(work, world)
                prob = np.zeros((len(self.plan.regions), *work.shape), np.float32)
                prob[(slice(None), *box)] = self._predict(work.data[box])
        order = BACK_ORDER[self.plan.frame]
        cord_p, lesion_p = (_to_native(work.with_data(p), rpi, image, keep, order)
                            if p is not None else image.with_data(np.zeros(image.shape,
                                                                           np.float32))
                            for p in self._regions(prob))
        config = self.options.postprocess
        if "cord" not in self.plan.regions:  # nothing to restrict lesions to
            config = replace(config, restrict_lesions_to_cord=False,
                             largest_cord_component=False)
        cord, lesion = postprocess(cord_p.data >= self.options.threshold,
                                   lesion_p.data >= self.options.threshold, image.spacing,
                                   config)
        cord_img = image.with_data(cord.astype(np.uint8))
        lesion_img = image.with_data(lesion.astype(np.uint8))
        table = lesion_table(lesion_img, lesion_p,
                             cord_img if "cord" in self.plan.regions else None)
        return SegmentResult(cord_img, lesion_img, lesion_p, table,
                             time.perf_counter() - start, box, line)


def _to_native(prob: Image, rpi: Image, image: Image, keep: tuple[slice, ...] | None = None,
               order: int = 1) -> Image:
    """Probabilities on the network grid -> the input's RPI grid (or its ``keep`` box, put
    back into zeros) -> the input's own voxel order."""
    target = rpi if keep is None else rpi.crop(keep)
    on_rpi = resample_to_grid(prob, target.shape, target.affine, order=order).data
    if keep is not None:
        full = np.zeros(rpi.shape, np.float32)
        full[keep] = on_rpi
        on_rpi = full
    native = reorient_like(rpi.with_data(on_rpi), image)
    return native.with_data(np.clip(native.data, 0, 1).astype(np.float32))


def _aligned(lo: int, hi: int, patch: int, size: int) -> slice:
    """A crop [lo, hi) on the sliding-window grid of the whole image (overlap 0.5).

    The start is a multiple of the window step and the length ``patch + k * step``, so the
    windows inside the crop are exactly windows of the full-image pass: predictions inside
    agree with ``--no-crop`` up to the faint Gaussian tails of windows that reach in from
    outside the crop.
    """
    step = max(patch // 2, 1)
    lo = max(int(lo) // step * step, 0)
    length = patch + int(np.ceil(max(int(hi) - lo - patch, 0) / step)) * step
    return slice(lo, min(lo + length, size))
