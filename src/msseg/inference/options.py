"""What every segmenter takes and gives: the options of a run, its result, the input checks
it starts with, and the :class:`SegmenterLike` protocol that every kind of segmenter follows
(msseg's own models, nnU-Net folders, SCT's released models, straightened and ensembles)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd

from msseg.errors import MssegError
from msseg.image import Image
from msseg.postprocess import PostprocessConfig

MAX_OBLIQUITY_DEG = 30.0


@dataclass(frozen=True)
class SegmentOptions:
    """How ``msseg segment`` runs a model (its command-line options; none changes the model).

    Attributes:
        threshold: the probability threshold of every map; None: the model's own.
        crop: predict around the cord only (the same values where it matters).
        tta: average a left-right mirrored pass.
        device: ``cpu`` or a torch device.
        backend: ``auto``, ``onnx`` or ``torch``.
        threads: intra-op threads (0: the cores available to the process).
        crop_margin_mm: how far beyond the cord's core the crop reaches.
        centerline: how stage 1 finds the cord: ``cnn`` or ``intensity``.
        centerline_step_mm: stage 1's slices this far apart (0: all).
        postprocess: the post-processing's settings.
        postprocessing: None: on for msseg's models, off for nnU-Net folders.
        folds: nnU-Net folders' folds to ensemble (``"0,1"``, ``"all"``; None: every fold).
        batch_size: windows per network call (None: the backend's default).
        straighten: predict in straightened space.
        straight_xy_mm: the straightened field of view.
    """

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
    """What a segmenter returns for one scan (the comments name each field)."""

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


class SegmenterLike(Protocol):
    """What `msseg segment`, the batch runner and the experiments need of a segmenter."""

    model: Any      # the model it runs (ModelFolder, NnunetFolder, SctModel; first member)
    options: SegmentOptions

    @property
    def plan(self) -> Any:
        """The model's plan (threshold, minimum lesion volume, frame), or None."""

    def segment(self, image: Image, name: str = "image") -> SegmentResult:
        """Masks and probabilities on the input's grid and header, and the lesion table."""
