"""Any segmenter run in straightened space."""

from __future__ import annotations

import time

import numpy as np

from msseg.errors import MssegError
from msseg.image import Image
from msseg.inference.centerline import finder_for
from msseg.inference.finish import finish_probabilities
from msseg.inference.options import SegmentOptions, SegmentResult, check_image


class StraightSegmenter:
    """Any segmenter run in straightened space: the input is straightened around its stage-1
    centerline (:mod:`msseg.preprocess.straighten`), the inner segmenter predicts the whole
    straightened image, and its probability maps come back to the input's grid through the
    inverse mapping before thresholding and post-processing — so masks are in the input's
    native space with its header, as for every task."""

    def __init__(self, inner, options: SegmentOptions):
        self.inner, self.options = inner, options
        self.finder = finder_for(options)
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
                                    self.inner.plan)

    @property
    def plan(self):
        return self.inner.plan
