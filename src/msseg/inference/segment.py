"""`msseg segment`'s pipeline for one image, crop-accelerated by the stage-1 centerline.

Every model goes through the same head and tail: check the image -> find the cord centerline
(stage 1: CNN1 heatmap + optimal path, :mod:`msseg.centerline`) -> the model's own
preprocessing and prediction, restricted to the neighbourhood of the centerline -> named
probability maps and masks on the input's grid -> post-processing (lesions restricted to the
dilated cord, small components removed, largest cord component) -> lesion table.

* msseg models (:class:`Segmenter`): reorient to RPI -> resample (in-plane only for 2D models,
  0.5 mm isotropic for the two-stage 3D models, slices resized for the brain model) ->
  normalise as trained -> either only the whole-image windows that touch the cord's core
  around the centerline (its half-width; inside it the values are those of the whole-image
  pass; the ``crop_margin_mm`` beyond blends the windows that reach it from the core; outside
  the two, 0) or,
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
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import pandas as pd

from msseg.errors import MssegError
from msseg.image import Image, bounding_box, spacing_from_affine, union_bounding_box
from msseg.lesions import lesion_table
from msseg.models.registry import Model, ModelFolder
from msseg.postprocess import THRESHOLD, PostprocessConfig, postprocess
from msseg.preprocess.orient import reorient_like, to_rpi
from msseg.preprocess.pipeline import preprocess_image, to_native, tube_box
from msseg.preprocess.tube import Tube, centres_on_grid

MAX_OBLIQUITY_DEG = 30.0
#: Interpolation order bringing probabilities back to the input grid, per plan frame: cubic
#: for slices resized to the patch (linear loses up to 4% of thin lesions' volume there).
BACK_ORDER = {"image": 1, "centerline": 1, "resize": 3, "straightened": 1}
CORD_HALF_WIDTH_MM = 7.0   # the crop box reaches this far beyond the centerline, plus margin


@dataclass(frozen=True)
class SegmentOptions:
    threshold: float | None = None  # None: the model's own (0.5; nnU-Net: its label rule)
    crop: bool = True
    tta: bool = False
    device: str = "cpu"
    backend: str = "auto"   # auto (ONNX Runtime on CPU when the model ships it) | onnx | torch
    threads: int = 0        # intra-op threads (0: the cores available to the process)
    crop_margin_mm: float = 5.0   # kept beyond CORD_HALF_WIDTH_MM (inside that, as --no-crop)
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


#: Plausible MRI voxel sizes (mm): outside, a header is wrong (units, pixdim) and resampling
#: to a model's grid would need absurd memory (1e-3 mm voxels asked for 44 GiB).
MIN_VOXEL_MM, MAX_VOXEL_MM = 0.05, 20.0


def check_image(image: Image, name: str) -> None:
    """Refuse inputs the pipeline cannot segment meaningfully, naming the file."""
    if min(image.shape) < 2:
        raise MssegError(f"{name}: image has shape {image.shape}; need at least 2 voxels "
                         "along every axis (a single slice cannot be segmented in 3D context)")
    spacing = np.asarray(image.spacing)
    if spacing.min() < MIN_VOXEL_MM or spacing.max() > MAX_VOXEL_MM:
        raise MssegError(f"{name}: voxel size {'×'.join(f'{s:.3g}' for s in spacing)} mm is "
                         f"outside what MRI acquires ({MIN_VOXEL_MM:g}–{MAX_VOXEL_MM:g} mm); "
                         "check the header's voxel size and units")
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
    """The segmenter of a model: :class:`Segmenter`, :class:`NnunetSegmenter` or (SCT's
    released lesion models) :class:`~msseg.inference.sct_lesion.SctLesionSegmenter`, wrapped
    in :class:`StraightSegmenter` for models trained in straightened space or
    ``straighten``."""
    from msseg.models.nnunet import NnunetFolder
    from msseg.models.sct import SctModel

    if isinstance(model, SctModel):
        if options.straighten:
            raise MssegError("--straighten: SCT's lesion models crop along the centerline "
                             "themselves; run them without it")
        from msseg.inference.sct_lesion import SctLesionSegmenter

        return SctLesionSegmenter(model, options)
    kind = NnunetSegmenter if isinstance(model, NnunetFolder) else Segmenter
    if options.straighten or (kind is Segmenter and model.plan.frame == "straightened"):
        inner = replace(options, crop=False, postprocessing=False, straighten=False)
        return StraightSegmenter(kind(model, inner), options)
    return kind(model, options)


def _finder(options: SegmentOptions):
    from msseg.centerline.detect import CenterlineOptions
    from msseg.centerline.finder import CenterlineFinder

    return CenterlineFinder(options.centerline, device=options.device,
                            options=CenterlineOptions(slice_step_mm=options.centerline_step_mm),
                            backend=options.backend, threads=options.threads)


def finish(image: Image, probabilities: dict[str, np.ndarray], masks: dict[str, np.ndarray],
           config: PostprocessConfig | None) -> tuple[dict, dict, pd.DataFrame]:
    """Post-process the cord and lesion masks (other labels stay as predicted), wrap every
    map on the input's grid and header, and measure the lesions. Post-processing and the
    lesion table work inside the bounding box of the masks (the same result: every mask
    voxel is in it), so their cost follows the cord, not the field of view."""
    masks = dict(masks)
    # every mask voxel is in box (one voxel at the origin if all masks are empty)
    box = union_bounding_box(list(masks.values())) or (slice(0, 1),) * 3
    if config is not None and ("cord" in masks or "lesion" in masks):
        if "cord" not in masks:  # nothing to restrict lesions to
            config = replace(config, restrict_lesions_to_cord=False,
                             largest_cord_component=False)
        empty = np.zeros(tuple(b.stop - b.start for b in box), bool)
        cord, lesion = postprocess(masks["cord"][box] if "cord" in masks else empty,
                                   masks["lesion"][box] if "lesion" in masks else empty,
                                   image.spacing, config)
        for name, mask in (("cord", cord), ("lesion", lesion)):
            if name in masks:
                masks[name] = np.zeros(image.shape, bool)
                masks[name][box] = mask
    mask_images = {n: image.with_data(_uint8_in(m, box)) for n, m in masks.items()}
    prob_images = {n: image.with_data(_unit_float32(p)) for n, p in probabilities.items()}
    if "lesion" not in mask_images:
        return mask_images, prob_images, lesion_table(Image(np.zeros((1, 1, 1), np.uint8),
                                                            image.affine))
    return mask_images, prob_images, _lesion_table_in(box, image, mask_images,
                                                      prob_images.get("lesion"))


def finish_probabilities(image: Image, probabilities: dict[str, np.ndarray],
                         options: SegmentOptions, start: float, line=None,
                         plan=None) -> SegmentResult:
    """Native-space probability maps -> thresholded, post-processed (unless
    ``postprocessing`` is False) result, timed from ``start``; ``plan``: the model's, whose
    threshold and minimum lesion volume apply where the options leave them open."""
    mask_images, prob_images, table = finish(image, probabilities,
                                             threshold_maps(probabilities, options, plan),
                                             postprocess_config(options, plan))
    return SegmentResult(mask_images, prob_images, table, time.perf_counter() - start,
                         None, line)


def threshold_maps(probabilities: dict[str, np.ndarray], options: SegmentOptions,
                   plan=None) -> dict[str, np.ndarray]:
    """Each map thresholded at its own threshold (:func:`model_threshold`)."""
    return {key: threshold_mask(p, model_threshold(options, plan, key))
            for key, p in probabilities.items()}


def model_threshold(options: SegmentOptions, plan=None, region: str = "lesion") -> float:
    """``--threshold`` if given (every map), else for the lesion map the model's own (its
    plan's, tuned on lesions; 0.5 without one) and 0.5 for every other map."""
    if options.threshold is not None:
        return options.threshold
    return getattr(plan, "threshold", THRESHOLD) if region == "lesion" else THRESHOLD


def model_postprocess(config: PostprocessConfig, plan) -> PostprocessConfig:
    """``config`` with the model's own minimum lesion volume where it leaves it open."""
    own = getattr(plan, "min_lesion_volume_mm3", None)
    if config.min_lesion_volume_mm3 is None and own is not None:
        return replace(config, min_lesion_volume_mm3=own)
    return config


def postprocess_config(options: SegmentOptions, plan=None) -> PostprocessConfig | None:
    """The post-processing a run applies (None: ``postprocessing`` is False)."""
    if options.postprocessing is False:
        return None
    return model_postprocess(options.postprocess, plan)


def threshold_mask(p: np.ndarray, threshold: float) -> np.ndarray:
    """``p >= threshold``, written only inside the bounding box of ``p > 0`` when the
    threshold is positive (the rest stays untouched zero memory)."""
    if threshold <= 0:
        return p >= threshold
    mask = np.zeros(p.shape, bool)
    box = bounding_box(p)
    if box is not None:
        mask[box] = p[box] >= threshold
    return mask


def _uint8_in(mask: np.ndarray, box: tuple[slice, ...]) -> np.ndarray:
    """A 0/1 uint8 copy of a mask whose voxels all lie in ``box``."""
    out = np.zeros(mask.shape, np.uint8)
    out[box] = mask[box]
    return out


def _unit_float32(p: np.ndarray) -> np.ndarray:
    """float32 in [0, 1]; already such arrays are passed as they are (no full-size pass that
    would touch the untouched zero pages of a mostly empty map)."""
    if p.dtype == np.float32 and (p.size == 0 or (p.min() >= 0 and p.max() <= 1)):
        return p
    return np.clip(p, 0, 1).astype(np.float32, copy=False)


def _lesion_table_in(box: tuple[slice, ...], image: Image, masks: dict[str, Image],
                     probability: Image | None) -> pd.DataFrame:
    """:func:`msseg.lesions.lesion_table` computed on the box (world positions follow the
    cropped affine), slice indices shifted back to the whole image."""
    from msseg.image import si_axis

    crop = {n: m.crop(box) for n, m in masks.items()}
    table = lesion_table(crop["lesion"], None if probability is None else probability.crop(box),
                         crop.get("cord"))
    k = si_axis(image)
    for column in ("slice_min", "slice_max"):
        table[column] = table[column] + int(box[k].start)
    return table


class Segmenter:
    """msseg's own models (:class:`~msseg.models.registry.ModelFolder`)."""

    def __init__(self, model: ModelFolder, options: SegmentOptions = SegmentOptions()):
        from msseg.centerline.finder import CENTERLINE_TASK

        if model.task == CENTERLINE_TASK:
            raise MssegError(f"{model.path.name}: a stage-1 centerline model; use "
                             "`msseg centerline` (segment tasks: msseg segment --list)")
        self.model, self.options = model, options
        self.plan = model.plan
        self.network = model.network(options.backend, options.device, options.threads)
        self.finder = None
        if self.plan.frame != "resize" and (options.crop or self.plan.frame == "centerline"):
            self.finder = _finder(options)

    def _predict(self, volume: np.ndarray, roi: np.ndarray | None = None,
                 core: np.ndarray | None = None) -> tuple[np.ndarray, tuple[slice, ...]]:
        from msseg.models.windows import predict_regions_extent

        return predict_regions_extent([self.network], volume, self.plan.patch_size,
                                      self.plan.dims, len(self.plan.regions),
                                      self.options.batch_size or 4, roi=roi,
                                      mirror_axes=(0,) if self.options.tta else (),
                                      touch=core)

    def _tube_predict(self, work: Image, world: np.ndarray) -> np.ndarray:
        tube = Tube.around(centres_on_grid(world, work.affine, work.shape[2]),
                           tuple(self.plan.patch_size[:2]))
        cut = tube.extract(work.data, float(work.data.min()))
        prob, _ = self._predict(cut)
        return tube.paste(prob, work.shape, 0.0)

    def _probabilities(self, work: Image, world: np.ndarray | None,
                       roi: np.ndarray | None = None, core: np.ndarray | None = None
                       ) -> tuple[np.ndarray, tuple[slice, ...], np.ndarray | None]:
        """Region probabilities over a box of the work grid (0 elsewhere), that box, and the
        neighbourhood of the centerline they were restricted to (``roi``; None: none); only
        the windows touching ``core`` (a part of ``roi``; None: ``roi``) run."""
        whole = tuple(slice(0, n) for n in work.shape)
        if self.plan.frame == "centerline":
            if world is None:
                return np.zeros((len(self.plan.regions), 1, 1, 1), np.float32), (
                    slice(0, 1),) * 3, None
            return self._tube_predict(work, world), whole, None
        if self.plan.frame == "resize":   # only slices holding brain (all-zero slices: none)
            roi = np.broadcast_to((work.data != 0).any(axis=(0, 1)), work.shape)
        prob, box = self._predict(work.data, roi, core)
        if roi is not None:
            prob[:, ~roi[box]] = 0
        return prob, box, roi

    def _cropped_input(self, image: Image, world: np.ndarray
                       ) -> tuple[Image, np.ndarray, np.ndarray]:
        """The network grid around the cord: the neighbourhood of the centerline (``roi``),
        its core (the cord's own half-width, the windows to run: :meth:`_core`) and a volume
        whose voxels are preprocessed only where the windows touching the core read
        (:func:`~msseg.models.windows.windows_box`); the rest is never-touched zero memory.
        The windows then see exactly the values of the whole-image preprocessing."""
        from msseg.models.windows import windows_box
        from msseg.preprocess.pipeline import network_grid, preprocess_box

        shape, affine = network_grid(image, self.plan)
        roi = cord_neighbourhood(shape, affine, world, self._margin_mm)
        core = self._core(shape, affine, world, roi)
        data = np.zeros(shape, np.float32)
        found = bounding_box(core)
        if found is not None:
            patch = tuple(self.plan.patch_size)
            if self.plan.dims == 2:   # slices first, as the 2D runner takes them
                z, x, y = windows_box((shape[2], *shape[:2]), patch,
                                      (found[2], *found[:2]))
                box = (x, y, z)
            else:
                box = windows_box(shape, patch, found)
            data[box] = preprocess_box(image, self.plan, box)
        return Image(data, affine), roi, core

    def _core(self, shape, affine, world: np.ndarray, roi: np.ndarray) -> np.ndarray:
        """The windows to run: those touching the cord's half-width around the centerline
        (``CORD_HALF_WIDTH_MM``). Every voxel of the margin beyond it lies in one of them
        while the margin is shorter than a window minus its step (then ``roi`` itself): the
        margin's values blend those windows only, the core's are exactly the whole pass's."""
        patch = self.plan.patch_size[:2] if self.plan.dims == 2 else self.plan.patch_size
        spacing = spacing_from_affine(affine)[:len(patch)]
        margin = np.ceil(self.options.crop_margin_mm / spacing)
        if any(m > p - max(int(p * 0.5), 1) for m, p in zip(margin, patch, strict=True)):
            return roi
        return cord_neighbourhood(shape, affine, world, CORD_HALF_WIDTH_MM)

    @property
    def _margin_mm(self) -> float:
        return self.options.crop_margin_mm + CORD_HALF_WIDTH_MM

    def segment(self, image: Image, name: str = "image") -> SegmentResult:
        start = time.perf_counter()
        check_image(image, name)
        line = self.finder.find(image) if self.finder is not None else None
        world = line.world() if line is not None and line.found else None
        rpi = to_rpi(image, copy=False)   # its grid only: a view of the input
        keep = None   # RPI voxel box the network grid covers (None: the whole image)
        if self.plan.frame == "centerline" and world is not None:
            points = (np.linalg.inv(rpi.affine) @ np.column_stack(
                [world, np.ones(len(world))]).T)[:2].T
            keep = tube_box(points, rpi, self.plan)
        roi = core = None
        if self.plan.frame == "image" and world is not None and self.options.crop:
            work, roi, core = self._cropped_input(image, world)
        else:
            work = preprocess_image(image, self.plan, keep)
        prob, box, roi = self._probabilities(work, world, roi, core)
        affine = work.crop(box).affine
        crop_box = None if roi is None else _bounding_box(roi)
        del work, roi, core   # the network grid's volume is not needed any more
        order = BACK_ORDER[self.plan.frame]
        probabilities = {region: to_native(Image(p, affine), rpi, image, order).data
                         for region, p in zip(self.plan.regions, prob, strict=True)}
        del prob
        mask_images, prob_images, table = finish(
            image, probabilities, threshold_maps(probabilities, self.options, self.plan),
            postprocess_config(self.options, self.plan))
        return SegmentResult(mask_images, prob_images, table, time.perf_counter() - start,
                             crop_box, line)


def cord_neighbourhood(shape: tuple[int, ...], affine: np.ndarray, world: np.ndarray,
                       margin_mm: float, step_mm: float = 0.5) -> np.ndarray:
    """The neighbourhood of the cord on a grid: around every point of the centerline (world
    mm, densified to ``step_mm``), ± ``margin_mm`` along the two grid axes across the cord,
    on the slices of the axis closest to S–I whose slab the point lies in (the nearest
    slice, and its neighbour when the point is within half a densification step of their
    border, so no slice is skipped) — a tube, so a curved cord's box does not grow with its
    curvature, and a thick slice holds the cord positions within its own thickness only."""
    world = _densified(world, step_mm)
    inverse = np.linalg.inv(affine)
    ijk = world @ inverse[:3, :3].T + inverse[:3, 3]
    spacing = spacing_from_affine(affine)
    along = int(np.argmax(np.abs(affine[2, :3]) / spacing))
    margin = np.ceil(margin_mm / spacing)
    lo = np.floor(ijk - margin)
    hi = np.ceil(ijk + margin) + 1
    reach = 0.5 + 0.5 * step_mm / spacing[along]
    lo[:, along] = np.ceil(ijk[:, along] - reach)
    hi[:, along] = np.floor(ijk[:, along] + reach) + 1
    lo = np.clip(lo, 0, shape).astype(int)
    hi = np.clip(hi, 0, shape).astype(int)
    mask = np.zeros(shape, bool)
    for a, b in zip(lo, hi, strict=True):
        mask[a[0]:b[0], a[1]:b[1], a[2]:b[2]] = True
    return mask


class NnunetSegmenter:
    """nnU-Net v2 results folders (:class:`~msseg.models.nnunet.NnunetFolder`)."""

    def __init__(self, model, options: SegmentOptions = SegmentOptions()):
        from msseg.models import backends
        from msseg.models.windows import WindowRunner

        kind = backends.backend_for(options.backend, options.device, has_onnx=False)
        self.model, self.options = model, options
        self.plan = model.plan
        self.labels = model.label_map
        folds = model.select_folds(options.folds)
        mirror = model.mirror_axes(folds[0]) if options.tta else ()
        batch = options.batch_size or (1 if options.device == "cpu" else 4)
        self.half = not options.crop   # --nnunet-exact: nnU-Net's float16 sums, as it does
        modules = model.networks(folds, options.device)
        if kind == "onnx":   # each fold exported once, run by ONNX Runtime
            networks = [backends.onnx_from_torch(m, (1, 1, *self.plan.patch_size),
                                                 options.threads) for m in modules]
        else:
            networks = [backends.TorchNetwork(m, options.device, options.threads)
                        for m in modules]
        self.runner = WindowRunner(networks, self.plan.patch_size, batch, mirror, "nnunet",
                                   half=self.half)
        self.finder = _finder(options) if options.crop else None

    def roi(self, grid, world: np.ndarray) -> np.ndarray:
        return cord_neighbourhood(grid.shape, grid.affine, world,
                                  self.options.crop_margin_mm + CORD_HALF_WIDTH_MM)

    def segment(self, image: Image, name: str = "image") -> SegmentResult:
        from msseg.preprocess import nnunet as nn

        start = time.perf_counter()
        check_image(image, name)
        line = self.finder.find(image) if self.finder is not None else None
        prepared = nn.preprocess(image, self.plan)
        roi = self.roi(prepared.grid, line.world()) if line is not None and line.found else None
        logits, _ = self.runner.predict(prepared.data, self.labels.heads, roi)
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
        probabilities = {key: st.unstraighten(p, geometry, image, 1)
                         for key, p in inner.probabilities.items()}
        return finish_probabilities(image, probabilities, self.options, start, line,
                                    getattr(self.inner, "plan", None))


class EnsembleSegmenter:
    """Several segmenters (a fold ensemble) as one: each predicts the input through its own
    pipeline, their native-space probability maps are averaged, then thresholded and
    post-processed once."""

    def __init__(self, members: Sequence, options: SegmentOptions = SegmentOptions()):
        if not members:
            raise MssegError("an ensemble needs at least one model")
        self.members, self.options = list(members), options
        self.model = self.members[0].model

    def segment(self, image: Image, name: str = "image") -> SegmentResult:
        start = time.perf_counter()
        results = [m.segment(image, name) for m in self.members]
        probabilities = {key: sum(np.asarray(r.probabilities[key].data, np.float32)
                                  for r in results) / len(results)
                         for key in results[0].probabilities}
        return finish_probabilities(image, probabilities, self.options, start,
                                    results[0].centerline)


def _densified(points: np.ndarray, step_mm: float) -> np.ndarray:
    """Points (n, 3) with extra points on every segment so that none is longer than step."""
    out = [points[:1]]
    for a, b in zip(points[:-1], points[1:], strict=True):
        n = max(1, int(np.ceil(np.linalg.norm(b - a) / step_mm)))
        out.append(a + (b - a) * (np.arange(1, n + 1)[:, None] / n))
    return np.concatenate(out)


def _bounding_box(mask: np.ndarray) -> tuple[slice, ...]:
    """Voxel box of the non-zero voxels (empty slices if there are none)."""
    return bounding_box(mask) or tuple(slice(0, 0) for _ in mask.shape)
