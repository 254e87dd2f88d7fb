"""Predictor: native image in, native-space cord and lesion masks out.

load -> RPI -> resample to the model's spacing (in-plane only for 2D models) -> z-score ->
sliding-window prediction -> probabilities resampled back onto the RPI grid of the input ->
threshold -> reoriented to the input's voxel order with its exact header.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from msseg.image import Image
from msseg.inference.predict import predict_probabilities
from msseg.models.networks import REGIONS
from msseg.models.registry import ModelFolder
from msseg.preprocess.orient import reorient_like, to_rpi
from msseg.preprocess.resample import resample_to_grid
from msseg.training.data import preprocess_image


@dataclass(frozen=True)
class Prediction:
    probabilities: dict[str, Image]   # float32 in [0, 1], native grid
    masks: dict[str, Image]           # uint8 0/1, native grid


class Predictor:
    def __init__(self, model: ModelFolder, device: str = "cpu", threshold: float = 0.5):
        self.model, self.device, self.threshold = model, device, threshold
        self.plan = model.plan
        self.network = model.load_network(device)

    def predict(self, image: Image) -> Prediction:
        rpi = to_rpi(image)
        work = preprocess_image(image, self.plan)
        with torch.inference_mode():
            prob = predict_probabilities(self.network, work.data, self.plan, device=self.device)
        probabilities, masks = {}, {}
        for channel, name in enumerate(REGIONS):
            on_rpi = resample_to_grid(work.with_data(prob[channel]), rpi.shape, rpi.affine,
                                      order=1)
            native = reorient_like(on_rpi, image)
            probabilities[name] = native.with_data(np.clip(native.data, 0, 1).astype(np.float32))
            masks[name] = native.with_data((native.data >= self.threshold).astype(np.uint8))
        return Prediction(probabilities, masks)
