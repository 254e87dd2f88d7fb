"""`Plan`: the contract between a trained msseg model and every use of it.

A plan says how an `Image` becomes network input and how the output goes back: the voxel order
the network sees (``orientation``, a nibabel axis code; SCT's RPI is ``LAS``), the working
spacing, the intensity normalisation and what it learnt from the training set, the frame
(whole image, a tube of windows along the centerline, or axial slices resized to the patch),
the patch, the network topology and the output regions. Training writes it (``plan.json`` in
every checkpoint and model folder); inference, the centerline stage and the nnU-Net adapter
read it. The functions that apply it live in :mod:`msseg.preprocess.pipeline`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from msseg.image import SCT_RPI

#: Output regions of region-based models: ``cord`` = cord ∪ lesion, ``lesion`` (sigmoid each).
REGIONS = ("cord", "lesion")
NORMALIZATIONS = ("zscore", "minmax", "nyul", "quantile")
FRAMES = ("image", "centerline", "resize", "straightened")


@dataclass(frozen=True)
class Plan:
    dims: int
    target_spacing: tuple[float, ...]   # (x, y) for 2D, (x, y, z) for 3D, mm
    patch_size: tuple[int, ...]
    kernels: tuple[tuple[int, ...], ...]
    strides: tuple[tuple[int, ...], ...]
    filters: tuple[int, ...]
    architecture: str = "dynunet"           # see msseg.models.networks
    regions: tuple[str, ...] = REGIONS
    dropout: float = 0.0
    normalization: str = "zscore"           # one of NORMALIZATIONS (preprocess.pipeline)
    intensity: dict[str, Any] = field(default_factory=dict)  # learnt landmarks / statistics
    frame: str = "image"                    # one of FRAMES
    orientation: str = SCT_RPI              # voxel order of the network grid (axis 2 = S-I)
    threshold: float = 0.5                  # lesion probability threshold (tuned on
    #                                         validation; other maps: 0.5)
    min_lesion_volume_mm3: float | None = None  # None: post-processing's default

    def __post_init__(self) -> None:
        if len(self.orientation) != 3 or self.orientation[2] not in "SI":
            raise ValueError(f"plan orientation {self.orientation!r}: axis 2 must run S-I")

    def to_dict(self) -> dict:
        return asdict(self)

    def replace(self, **changes: Any) -> Plan:
        return replace(self, **changes)

    @classmethod
    def from_dict(cls, raw: dict) -> Plan:
        return cls(raw["dims"], tuple(raw["target_spacing"]), tuple(raw["patch_size"]),
                   tuple(tuple(k) for k in raw["kernels"]),
                   tuple(tuple(s) for s in raw["strides"]), tuple(raw["filters"]),
                   raw.get("architecture", "dynunet"),
                   tuple(raw.get("regions", REGIONS)), raw.get("dropout", 0.0),
                   raw.get("normalization", "zscore"), dict(raw.get("intensity", {})),
                   raw.get("frame", "image"), raw.get("orientation", SCT_RPI),
                   raw.get("threshold", 0.5), raw.get("min_lesion_volume_mm3"))
