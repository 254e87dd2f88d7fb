"""One frozen training configuration, saved with every checkpoint (no subclass per setting)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from msseg.errors import MssegError


@dataclass(frozen=True)
class TrainConfig:
    dataset: str = ""                 # msseg dataset index (msseg dataset scan -o ...)
    output: str = "runs/model"        # run folder: checkpoints, log.csv, curves.png
    task: str = "lesion_ms_axial_t2"
    dims: int = 2                     # 2: axial slices; 3: anisotropic 3D patches
    fold: int | None = 0              # validation fold (records with this fold); None: val_split
    val_split: float = 0.2            # used when records carry no fold
    epochs: int = 50
    iterations_per_epoch: int = 250
    batch_size: int = 8
    optimizer: str = "sgd"            # sgd (nnU-Net: momentum 0.99, nesterov, poly LR) or adam
    learning_rate: float = 1e-2
    weight_decay: float = 3e-5
    poly_exponent: float = 0.9
    sampling: str = "uniform"         # uniform | contrast-sqrt
    foreground_fraction: float = 0.67  # patches centred on the cord (with jitter); rest random
    jitter_fraction: float = 0.25     # jitter as a fraction of the patch size
    lesion_share: float = 0.0         # of foreground patches, share centred on a lesion voxel
    lesion_sampling: str = "voxel"    # voxel (any lesion voxel) | lesion (a lesion, uniformly)
    patch_size: tuple[int, ...] | None = None   # None: planned from the dataset
    target_spacing: tuple[float, ...] | None = None
    base_filters: int = 16
    max_filters: int = 256
    augment: bool = True
    val_max_cases: int = 8
    seed: int = 0
    init_from: str | None = None
    num_threads: int = 0              # 0: torch default
    architecture: str = "dynunet"     # dynunet | dilated_unet (CNN1) | unet (CNN2) | unetpp
    #                                   | unetpp_resnet / unet_resnet (UNet++ / U-Net decoder on
    #                                   a ResNet-18-style encoder)
    regions: tuple[str, ...] = ("cord", "lesion")  # output channels (cord = cord ∪ lesion)
    loss: str = "dice_bce"            # dice_bce | dice | wbce (class-weighted BCE)
    pos_weight: float = 0.8           # wbce: weight of positive voxels, 1 − it for the rest
    dropout: float = 0.0
    normalization: str = "zscore"     # zscore (per image) | minmax | nyul | quantile (learnt)
    frame: str = "image"              # image | centerline (patches along the cord centerline)
    #                                   | resize (axial slices resized to the patch: brain)
    #                                   | straightened (images straightened along the cord)
    augmentation: str = "nnunet"      # nnunet | cnn1 | cnn2 | scanner | none (training.augment)
    label_consensus: str = "none"     # none | union | majority | staple of records' raters
    extra: dict[str, Any] = field(default_factory=dict)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - names)
        if unknown:
            raise MssegError(f"unknown config keys: {', '.join(unknown)}")
        raw = dict(raw)
        for key in ("patch_size", "target_spacing", "regions"):
            if raw.get(key) is not None:
                raw[key] = tuple(raw[key])
        config = cls(**raw)
        config.validate()
        return config

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise MssegError(f"{path}: cannot read config ({exc})") from exc
        return cls.from_dict(raw)

    def to_yaml(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        raw = self.to_dict()
        for key in ("patch_size", "target_spacing", "regions"):
            if raw[key] is not None:
                raw[key] = list(raw[key])
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        return path

    def validate(self) -> None:
        if self.dims not in (2, 3):
            raise MssegError(f"dims {self.dims}: must be 2 or 3")
        if self.optimizer not in ("sgd", "adam"):
            raise MssegError(f"optimizer {self.optimizer!r}: must be sgd or adam")
        if self.sampling not in ("uniform", "contrast-sqrt"):
            raise MssegError(f"sampling {self.sampling!r}: must be uniform or contrast-sqrt")
        choices = {"architecture": ("dynunet", "dilated_unet", "unet", "unetpp",
                                     "unetpp_resnet", "unet_resnet"),
                   "loss": ("dice_bce", "dice", "wbce"),
                   "normalization": ("zscore", "nyul", "quantile", "minmax"),
                   "frame": ("image", "centerline", "resize", "straightened"),
                   "augmentation": ("nnunet", "cnn1", "cnn2", "scanner", "none"),
                   "lesion_sampling": ("voxel", "lesion"),
                   "label_consensus": ("none", "union", "majority", "staple")}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise MssegError(f"{key} {getattr(self, key)!r}: must be one of "
                                 f"{', '.join(allowed)}")
        if not self.regions or set(self.regions) - {"cord", "lesion"}:
            raise MssegError(f"regions {self.regions}: choose from cord, lesion")
        if self.frame == "resize" and self.dims != 2:
            raise MssegError("frame resize needs dims 2 (axial slices)")
        if self.frame == "centerline" and self.dims != 3:
            raise MssegError("frame centerline needs dims 3 (3D patches along the centerline)")
        if self.epochs < 1 or self.iterations_per_epoch < 1 or self.batch_size < 1:
            raise MssegError("epochs, iterations_per_epoch and batch_size must be ≥ 1")
