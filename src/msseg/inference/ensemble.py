"""Several segmenters (a fold ensemble) as one."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from msseg.errors import MssegError
from msseg.image import Image
from msseg.inference.finish import finish_probabilities
from msseg.inference.options import SegmentOptions, SegmentResult


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

    @property
    def plan(self):
        return self.members[0].plan
