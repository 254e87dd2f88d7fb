"""`msseg segment`'s pipeline for one image, crop-accelerated.

load -> reorient to RPI -> resample (in-plane only for 2D models) -> z-score -> locate the cord
(a fast pass: every ``locate_step``-th slice, non-overlapping windows) -> crop a box around it
(cord extent + ``crop_margin_mm``, never smaller than the network's patch) -> sliding-window
prediction with Gaussian blending (optionally with left-right mirroring, ``tta``) -> uncrop ->
probabilities resampled back onto the input's grid -> threshold -> post-processing (lesions
restricted to the dilated cord, small components removed) -> masks with the input's header.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import torch

from msseg.errors import MssegError
from msseg.image import Image
from msseg.inference.predict import predict_probabilities
from msseg.lesions import lesion_table
from msseg.models.networks import REGIONS
from msseg.models.registry import ModelFolder
from msseg.postprocess import PostprocessConfig, largest_component, postprocess
from msseg.preprocess.orient import reorient_like, to_rpi
from msseg.preprocess.resample import resample_to_grid
from msseg.training.data import preprocess_image

MAX_OBLIQUITY_DEG = 30.0


@dataclass(frozen=True)
class SegmentOptions:
    threshold: float = 0.5
    crop: bool = True
    tta: bool = False
    device: str = "cpu"
    backend: str = "torch"  # torch | onnx
    crop_margin_mm: float = 20.0
    locate_step: int = 3
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
        self.model, self.options = model, options
        self.plan = model.plan
        self.network = model.load_network(options.device)
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

    def locate(self, work: Image) -> tuple[slice, ...] | None:
        """In-plane box around the cord from a fast pass; None if no cord was found."""
        volume = work.data
        step = max(1, self.options.locate_step)
        sub = volume[:, :, ::step] if self.plan.dims == 2 else volume
        with torch.inference_mode():
            cord = predict_probabilities(self.network, sub, self.plan, overlap=0.0,
                                         device=self.options.device)[0] > self.options.threshold
        if not cord.any():
            return None
        hits = np.argwhere(largest_component(cord))  # the cord is one connected structure
        margin = np.ceil(self.options.crop_margin_mm / np.asarray(work.spacing[:2])).astype(int)
        lo, hi = hits.min(0)[:2] - margin, hits.max(0)[:2] + margin + 1
        box = tuple(_aligned(lo[a], hi[a], self.plan.patch_size[a], volume.shape[a])
                    for a in range(2))
        return (*box, slice(None))

    def segment(self, image: Image, name: str = "image") -> SegmentResult:
        start = time.perf_counter()
        check_image(image, name)
        work = preprocess_image(image, self.plan)
        box = self.locate(work) if self.options.crop else None
        with torch.inference_mode():
            if box is None:
                prob = self._predict(work.data)
            else:
                prob = np.zeros((len(REGIONS), *work.shape), np.float32)
                prob[(slice(None), *box)] = self._predict(work.data[box])
        rpi = to_rpi(image)
        cord_p, lesion_p = (_to_native(work.with_data(prob[c]), rpi, image) for c in range(2))
        cord, lesion = postprocess(cord_p.data >= self.options.threshold,
                                   lesion_p.data >= self.options.threshold, image.spacing,
                                   self.options.postprocess)
        cord_img = image.with_data(cord.astype(np.uint8))
        lesion_img = image.with_data(lesion.astype(np.uint8))
        table = lesion_table(lesion_img, lesion_p, cord_img)
        return SegmentResult(cord_img, lesion_img, lesion_p, table,
                             time.perf_counter() - start, box)



def _to_native(prob: Image, rpi: Image, image: Image) -> Image:
    """Probabilities on the network grid -> the input's RPI grid -> its own voxel order."""
    on_rpi = resample_to_grid(prob, rpi.shape, rpi.affine, order=1)
    native = reorient_like(on_rpi, image)
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
