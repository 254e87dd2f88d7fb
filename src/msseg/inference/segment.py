"""`msseg segment`'s pipeline for one image, crop-accelerated by the stage-1 centerline.

Every model goes through the same head and tail: check the image -> find the cord centerline
(stage 1: CNN1 heatmap + optimal path, :mod:`msseg.centerline`) -> the model's own
preprocessing and prediction, restricted to the neighbourhood of the centerline -> named
probability maps and masks on the input's grid -> post-processing (lesions restricted to the
dilated cord, small components removed, largest cord component) -> lesion table.

* msseg models (:class:`Segmenter`): reorient to RPI -> resample (in-plane only for 2D models,
  0.5 mm isotropic for the two-stage 3D models, slices resized for the brain model) ->
  normalise as trained -> either a box around the centerline (its extent +
  ``crop_margin_mm`` + the cord's half-width, aligned on the whole image's window grid) or,
  for models trained along the centerline (``plan.frame == "centerline"``), the tube of windows
  that follows it -> sliding windows with Gaussian blending (``tta``: a left-right mirrored
  pass too) -> probabilities back to the input's grid -> ``p >= threshold``.
* nnU-Net folders (:class:`NnunetSegmenter`): nnU-Net's own preprocessing
  (:mod:`msseg.preprocess.nnunet`) and window grid; only the windows that touch the box around
  the centerline are run (so values inside it are those of the whole-image pass; outside it the
  output is background), folds averaged as logits, logits resampled back, sigmoid / softmax,
  ``regions_class_order`` or argmax, one mask per ``dataset.json`` label. ``crop=False``
  (``--nnunet-exact``) predicts the whole field of view as nnU-Net does.

Without a centerline (``crop=False``, or no cord found) box models predict the whole image and
tube models return empty masks.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import pandas as pd

from msseg.errors import MssegError
from msseg.image import Image
from msseg.lesions import lesion_table
from msseg.models.registry import Model, ModelFolder
from msseg.postprocess import PostprocessConfig, postprocess
from msseg.preprocess.orient import reorient_like, to_rpi
from msseg.preprocess.pipeline import preprocess_image, to_native, tube_box
from msseg.preprocess.tube import Tube, centres_on_grid

MAX_OBLIQUITY_DEG = 30.0
#: Interpolation order bringing probabilities back to the input grid, per plan frame: cubic
#: for slices resized to the patch (linear loses up to 4% of thin lesions' volume there).
BACK_ORDER = {"image": 1, "centerline": 1, "resize": 3, "straightened": 1}
CORD_HALF_WIDTH_MM = 10.0   # the crop box reaches this far beyond the centerline, plus margin


@dataclass(frozen=True)
class SegmentOptions:
    threshold: float | None = None  # None: the model's own (0.5; nnU-Net: its label rule)
    crop: bool = True
    tta: bool = False
    device: str = "cpu"
    backend: str = "torch"  # torch | onnx
    crop_margin_mm: float = 20.0
    centerline: str = "cnn"     # cnn | intensity: how stage 1 finds the cord
    centerline_step_mm: float = 5.0  # stage-1 heatmap on slices this far apart (0: all)
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)
    postprocessing: bool | None = None  # None: on for msseg models, off for nnU-Net folders
    folds: str | None = None    # nnU-Net folders: "0,1" / "all"; None: every fold present
    batch_size: int | None = None  # windows per network call; None: 4 (nnU-Net folders:
    #                                1 on CPU, faster per window here; 4 on GPU)
    straighten: bool = False    # predict in straightened space (plan frame straightened: always)
    straight_xy_mm: float = 35.0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SegmentResult:
    masks: dict[str, Image]          # uint8 0/1 on the input's grid and header, by name
    probabilities: dict[str, Image]  # float32 in [0, 1], by name
    table: pd.DataFrame              # one row per lesion (empty without a lesion output)
    seconds: float
    crop_box: tuple | None           # in the network grid
    centerline: object = None        # msseg.centerline.detect.Centerline (None: not computed)

    @property
    def cord(self) -> Image | None:
        return self.masks.get("cord")

    @property
    def lesion(self) -> Image | None:
        return self.masks.get("lesion")

    @property
    def lesion_probability(self) -> Image | None:
        return self.probabilities.get("lesion")


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


def make_segmenter(model: Model, options: SegmentOptions = SegmentOptions()):
    """The segmenter of a model: :class:`Segmenter` or :class:`NnunetSegmenter`, wrapped in
    :class:`StraightSegmenter` for models trained in straightened space or ``straighten``."""
    from msseg.models.nnunet import NnunetFolder

    kind = NnunetSegmenter if isinstance(model, NnunetFolder) else Segmenter
    if options.straighten or (kind is Segmenter and model.plan.frame == "straightened"):
        inner = replace(options, crop=False, postprocessing=False, straighten=False)
        return StraightSegmenter(kind(model, inner), options)
    return kind(model, options)


def _finder(options: SegmentOptions):
    from msseg.centerline.detect import CenterlineOptions
    from msseg.centerline.finder import CenterlineFinder

    return CenterlineFinder(options.centerline, device=options.device,
                            options=CenterlineOptions(slice_step_mm=options.centerline_step_mm))


def finish(image: Image, probabilities: dict[str, np.ndarray], masks: dict[str, np.ndarray],
           config: PostprocessConfig | None) -> tuple[dict, dict, pd.DataFrame]:
    """Post-process the cord and lesion masks (other labels stay as predicted), wrap every
    map on the input's grid and header, and measure the lesions."""
    masks = dict(masks)
    if config is not None and ("cord" in masks or "lesion" in masks):
        if "cord" not in masks:  # nothing to restrict lesions to
            config = replace(config, restrict_lesions_to_cord=False,
                             largest_cord_component=False)
        empty = np.zeros(image.shape, bool)
        cord, lesion = postprocess(masks.get("cord", empty), masks.get("lesion", empty),
                                   image.spacing, config)
        for name, mask in (("cord", cord), ("lesion", lesion)):
            if name in masks:
                masks[name] = mask
    mask_images = {n: image.with_data(m.astype(np.uint8)) for n, m in masks.items()}
    prob_images = {n: image.with_data(np.clip(p, 0, 1).astype(np.float32, copy=False))
                   for n, p in probabilities.items()}
    table = lesion_table(mask_images["lesion"], prob_images.get("lesion"),
                         mask_images.get("cord")) if "lesion" in mask_images else (
        lesion_table(image.with_data(np.zeros(image.shape, np.uint8))))
    return mask_images, prob_images, table


class Segmenter:
    """msseg's own models (:class:`~msseg.models.registry.ModelFolder`)."""

    def __init__(self, model: ModelFolder, options: SegmentOptions = SegmentOptions()):
        from msseg.centerline.finder import CENTERLINE_TASK

        if model.task == CENTERLINE_TASK:
            raise MssegError(f"{model.path.name}: a stage-1 centerline model; use "
                             "`msseg centerline` (segment tasks: msseg segment --list)")
        self.model, self.options = model, options
        self.plan = model.plan
        self.network = model.load_network(options.device)
        self.finder = None
        if self.plan.frame != "resize" and (options.crop or self.plan.frame == "centerline"):
            self.finder = _finder(options)
        if options.backend == "onnx":
            from msseg.inference.onnx_backend import OnnxNetwork

            self.network = OnnxNetwork(self.network, self.plan.patch_size)
        elif options.backend != "torch":
            raise MssegError(f"--backend {options.backend!r}: must be torch or onnx")

    def _predict(self, volume: np.ndarray, overlap: float = 0.5) -> np.ndarray:
        from msseg.models.windows import predict_probabilities

        batch = self.options.batch_size or 4
        prob = predict_probabilities(self.network, volume, self.plan, overlap=overlap,
                                     batch_size=batch, device=self.options.device)
        if self.options.tta:
            flipped = predict_probabilities(self.network, volume[::-1].copy(), self.plan,
                                            overlap=overlap, batch_size=batch,
                                            device=self.options.device)
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

    def _tube_predict(self, work: Image, world: np.ndarray) -> np.ndarray:
        tube = Tube.around(centres_on_grid(world, work.affine, work.shape[2]),
                           tuple(self.plan.patch_size[:2]))
        cut = tube.extract(work.data, float(work.data.min()))
        return tube.paste(self._predict(cut), work.shape, 0.0)

    def _probabilities(self, work: Image, world: np.ndarray | None) -> tuple[np.ndarray, tuple]:
        """Region probabilities on the work grid, and the crop box used (None: none)."""
        import torch

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
        return prob, box

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
        prob, box = self._probabilities(work, world)
        order = BACK_ORDER[self.plan.frame]
        threshold = 0.5 if self.options.threshold is None else self.options.threshold
        probabilities, masks = {}, {}
        for region, p in zip(self.plan.regions, prob, strict=True):
            probabilities[region] = to_native(work.with_data(p), rpi, image, keep, order).data
            masks[region] = probabilities[region] >= threshold
        config = self.options.postprocess if self.options.postprocessing is not False else None
        mask_images, prob_images, table = finish(image, probabilities, masks, config)
        return SegmentResult(mask_images, prob_images, table, time.perf_counter() - start,
                             box, line)


class NnunetSegmenter:
    """nnU-Net v2 results folders (:class:`~msseg.models.nnunet.NnunetFolder`)."""

    def __init__(self, model, options: SegmentOptions = SegmentOptions()):
        from msseg.models.windows import WindowRunner

        if options.backend not in ("torch", "onnx"):
            raise MssegError(f"--backend {options.backend!r}: must be torch or onnx")
        self.model, self.options = model, options
        self.plan = model.plan
        self.labels = model.label_map
        folds = model.select_folds(options.folds)
        mirror = model.mirror_axes(folds[0]) if options.tta else ()
        batch = options.batch_size or (1 if options.device == "cpu" else 4)
        self.half = not options.crop   # --nnunet-exact: nnU-Net's float16 sums, as it does
        networks = model.networks(folds, options.device)
        if options.backend == "onnx":   # each fold exported once, run by ONNX Runtime
            from msseg.inference.onnx_backend import OnnxNetwork

            networks = [OnnxNetwork(n, self.plan.patch_size) for n in networks]
        self.runner = WindowRunner(networks, self.plan.patch_size, batch, mirror,
                                   options.device, half=self.half)
        self.finder = _finder(options) if options.crop else None

    def roi(self, grid, world: np.ndarray) -> np.ndarray:
        """The neighbourhood of the cord on the network grid: around every point of the
        centerline (world mm, densified to 0.5 mm), ± (cord half-width + crop margin) along
        the two grid axes across the cord and ± one step along the one closest to S–I."""
        world = _densified(world, 0.5)
        inverse = np.linalg.inv(grid.affine)
        ijk = world @ inverse[:3, :3].T + inverse[:3, 3]
        spacing = np.linalg.norm(grid.affine[:3, :3], axis=0)
        along = int(np.argmax(np.abs(grid.affine[2, :3]) / spacing))
        margin = np.ceil((self.options.crop_margin_mm + CORD_HALF_WIDTH_MM) / spacing)
        margin[along] = np.ceil(0.5 / spacing[along]) + 1
        lo = np.clip(np.floor(ijk - margin), 0, grid.shape).astype(int)
        hi = np.clip(np.ceil(ijk + margin) + 1, 0, grid.shape).astype(int)
        mask = np.zeros(grid.shape, bool)
        for a, b in zip(lo, hi, strict=True):
            mask[a[0]:b[0], a[1]:b[1], a[2]:b[2]] = True
        return mask

    def segment(self, image: Image, name: str = "image") -> SegmentResult:
        from msseg.preprocess import nnunet as nn

        start = time.perf_counter()
        check_image(image, name)
        line = self.finder.find(image) if self.finder is not None else None
        prepared = nn.preprocess(image, self.plan)
        roi = self.roi(prepared.grid, line.world()) if line is not None and line.found else None
        logits, _ = self.runner.predict(prepared.data, self.labels.heads, roi=roi)
        cropped = nn.logits_to_cropped(logits, prepared, self.plan, self.half)
        del logits
        probs = self.labels.probabilities(cropped)
        if roi is not None:  # outside the roi: background, as outside nnU-Net's own crop
            shape = cropped.shape[1:]
            keep = nn.resample(roi[None].astype(np.float32), shape, None, 0, 0)[0] > 0.5
            probs[:, ~keep] = self.labels.background()[:, None]
        full = nn.to_native(probs, prepared, self.plan, self.labels.background())
        native = np.stack([reorient_like(prepared.oriented.with_data(c), image).data
                           for c in full])
        threshold = 0.5 if self.options.threshold is None else self.options.threshold
        masks, probabilities = self.labels.named_maps(self.labels.label_map(native, threshold),
                                                      native)
        config = self.options.postprocess if self.options.postprocessing else None
        mask_images, prob_images, table = finish(image, probabilities, masks, config)
        return SegmentResult(mask_images, prob_images, table, time.perf_counter() - start,
                             None if roi is None else _bounding_box(roi), line)


class StraightSegmenter:
    """Any segmenter run in straightened space: the input is straightened around its stage-1
    centerline (:mod:`msseg.preprocess.straighten`), the inner segmenter predicts the whole
    straightened image, and its probability maps come back to the input's grid through the
    inverse mapping before thresholding and post-processing — so masks are in the input's
    native space with its header, as for every task."""

    def __init__(self, inner, options: SegmentOptions):
        self.inner, self.options = inner, options
        self.finder = _finder(options)
        self.model = inner.model

    def segment(self, image: Image, name: str = "image") -> SegmentResult:
        from msseg.preprocess import straighten as st

        start = time.perf_counter()
        check_image(image, name)
        line = self.finder.find(image)
        if not line.found:
            raise MssegError(f"{name}: no spinal cord found, so it cannot be straightened")
        found = np.flatnonzero(line.detected)
        geometry = st.geometry_for(image, line.world()[found[0]:found[-1] + 1],
                                   self.options.straight_xy_mm)
        straight = st.straighten_image(image, geometry, 1)
        inner = self.inner.segment(straight, name)
        threshold = 0.5 if self.options.threshold is None else self.options.threshold
        probabilities = {key: st.unstraighten(p, geometry, image, 1)
                         for key, p in inner.probabilities.items()}
        masks = {key: p >= threshold for key, p in probabilities.items()}
        config = self.options.postprocess if self.options.postprocessing is not False else None
        mask_images, prob_images, table = finish(image, probabilities, masks, config)
        return SegmentResult(mask_images, prob_images, table, time.perf_counter() - start,
                             None, line)


def _densified(points: np.ndarray, step_mm: float) -> np.ndarray:
    """Points (n, 3) with extra points on every segment so that none is longer than step."""
    out = [points[:1]]
    for a, b in zip(points[:-1], points[1:], strict=True):
        n = max(1, int(np.ceil(np.linalg.norm(b - a) / step_mm)))
        out.append(a + (b - a) * (np.arange(1, n + 1)[:, None] / n))
    return np.concatenate(out)


def _bounding_box(mask: np.ndarray) -> tuple[slice, ...]:
    hits = np.argwhere(mask)
    if hits.size == 0:
        return tuple(slice(0, 0) for _ in mask.shape)
    return tuple(slice(int(a), int(b) + 1) for a, b in zip(hits.min(0), hits.max(0),
                                                            strict=True))


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
