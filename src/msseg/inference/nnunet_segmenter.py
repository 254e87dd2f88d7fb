"""nnU-Net v2 results folders run through `msseg segment`'s head and tail."""

from __future__ import annotations

import time

import numpy as np

from msseg.image import Image
from msseg.inference.centerline import finder_for
from msseg.inference.crop import CORD_HALF_WIDTH_MM, box_of, cord_neighbourhood
from msseg.inference.finish import finish
from msseg.inference.options import SegmentOptions, SegmentResult, check_image
from msseg.preprocess.orient import reorient_like


class NnunetSegmenter:
    """nnU-Net v2 results folders (:class:`~msseg.models.nnunet_folder.NnunetFolder`)."""

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
        self.finder = finder_for(options) if options.crop else None

    def roi(self, grid, world: np.ndarray) -> np.ndarray:
        return cord_neighbourhood(grid.shape, grid.affine, world,
                                  self.options.crop_margin_mm + CORD_HALF_WIDTH_MM)

    def segment(self, image: Image, name: str = "image") -> SegmentResult:
        from msseg.preprocess import nnunet_preprocessing as nn

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
        full = nn.uncrop_to_input_order(probs, prepared, self.plan, self.labels.background())
        native = np.stack([reorient_like(prepared.oriented.with_data(c), image).data
                           for c in full])
        threshold = 0.5 if self.options.threshold is None else self.options.threshold
        masks, probabilities = self.labels.named_maps(self.labels.label_map(native, threshold),
                                                      native)
        config = self.options.postprocess if self.options.postprocessing else None
        mask_images, prob_images, table = finish(image, probabilities, masks, config)
        return SegmentResult(mask_images, prob_images, table, time.perf_counter() - start,
                             None if roi is None else box_of(roi), line)
