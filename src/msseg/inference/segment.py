"""`msseg segment`'s pipeline for one image, crop-accelerated by the stage-1 centerline.

Design notes: docs/explanation/design-notes.md#msseginferencesegment.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from msseg.errors import MssegError
from msseg.image import Image, bounding_box, spacing_from_affine
from msseg.inference.centerline import finder_for
from msseg.inference.crop import CORD_HALF_WIDTH_MM, box_of, cord_neighbourhood
from msseg.inference.finish import finish, postprocess_config, threshold_maps
from msseg.inference.nnunet_segmenter import NnunetSegmenter
from msseg.inference.options import (
    SegmenterLike,
    SegmentOptions,
    SegmentResult,
    check_image,
)
from msseg.inference.straight import StraightSegmenter
from msseg.models.registry import Model, ModelFolder
from msseg.preprocess.orient import to_rpi
from msseg.preprocess.pipeline import preprocess_image, to_native, tube_box
from msseg.preprocess.tube import Tube, centres_on_grid

#: Interpolation order bringing probabilities back to the input grid, per plan frame: cubic
#: for slices resized to the patch (linear loses up to 4% of thin lesions' volume there).
BACK_ORDER = {"image": 1, "centerline": 1, "resize": 3, "straightened": 1}


def make_segmenter(model: Model, options: SegmentOptions = SegmentOptions()) -> SegmenterLike:
    """The segmenter of a model, whatever its kind.

    :class:`Segmenter` for msseg's models, :class:`NnunetSegmenter` for nnU-Net folders,
    :class:`~msseg.inference.sct_lesion.SctLesionSegmenter` for SCT's released lesion models;
    wrapped in :class:`StraightSegmenter` for models trained in straightened space or with
    ``options.straighten``.

    Args:
        model: a model from :func:`msseg.models.registry.find_model` (a task name or a folder).
        options: how to run it (crop, threshold, backend, threads…).

    Returns:
        An object with ``segment(image, name) -> SegmentResult`` and ``plan``.
    """
    from msseg.models.nnunet_folder import NnunetFolder
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


class Segmenter:
    """msseg's own models (:class:`~msseg.models.registry.ModelFolder`)."""

    def __init__(self, model: ModelFolder, options: SegmentOptions = SegmentOptions()):
        from msseg.inference.centerline import CENTERLINE_TASK

        if model.task == CENTERLINE_TASK:
            raise MssegError(f"{model.path.name}: a stage-1 centerline model; use "
                             "`msseg centerline` (segment tasks: msseg segment --list)")
        self.model, self.options = model, options
        self.plan = model.plan
        self.network = model.network(options.backend, options.device, options.threads)
        self.finder = None
        if self.plan.frame != "resize" and (options.crop or self.plan.frame == "centerline"):
            self.finder = finder_for(options)

    def _predict(self, volume: np.ndarray, roi: np.ndarray | None = None,
                 core: np.ndarray | None = None) -> tuple[np.ndarray, tuple[slice, ...]]:
        from msseg.models.windows import predict_regions_extent

        return predict_regions_extent([self.network], volume, self.plan.patch_size,
                                      self.plan.dims, len(self.plan.regions),
                                      self.options.batch_size or 4, roi=roi,
                                      mirror_axes=(0,) if self.options.tta else (),
                                      touch=core,
                                      central=core is not None and self.plan.dims == 2)

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
        from msseg.preprocess.pipeline import NetworkGrid

        grid = NetworkGrid(image, self.plan)
        shape, affine = grid.shape, grid.affine
        roi = cord_neighbourhood(shape, affine, world, self._margin_mm)
        core = self._core(shape, affine, world, roi)
        data = np.zeros(shape, np.float32)
        found = bounding_box(core)
        if found is not None:
            patch = tuple(self.plan.patch_size)
            if self.plan.dims == 2:   # slices first, as the 2D runner takes them
                z, x, y = windows_box((shape[2], *shape[:2]), patch,
                                      (found[2], *found[:2]), central=True)
                box = (x, y, z)
            else:
                box = windows_box(shape, patch, found)
            data[box] = grid.box(box)
        return Image(data, affine), roi, core

    def _core(self, shape, affine, world: np.ndarray, roi: np.ndarray) -> np.ndarray:
        """The windows to run: those whose centre part meets the cord's half-width around the
        centerline (``CORD_HALF_WIDTH_MM``; 3D models: those touching it). Every voxel of the
        margin beyond it lies in one of them while the margin is shorter than a window minus
        its step (then ``roi`` itself): the margin's values blend those windows only, the
        core's are the whole pass's but for windows weighing under 2% there."""
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
        """Segment one scan: masks on its grid and header, probabilities, lesion table.

        Args:
            image: the scan, any orientation.
            name: how messages name it.

        Returns:
            The masks (uint8, by output name), the probability maps (float32), the lesion table,
            the time taken, the crop box and the stage-1 centerline.

        Raises:
            MssegError: the image is not one the model can segment (4D, constant, one slice…).
        """
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
        crop_box = None if roi is None else box_of(roi)
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
