"""nnU-Net v2 results folders as msseg models: plans + dataset.json + fold checkpoints.

Design notes: docs/explanation/design-notes.md#mssegmodelsnnunet_folder.
"""

from __future__ import annotations

import json
import pydoc
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from msseg.errors import MssegError
from msseg.preprocess.nnunet_preprocessing import NnunetPlan, sct_to_nibabel

CHECKPOINTS = ("checkpoint_final.pth", "checkpoint_best.pth")
ARCHITECTURES = ("dynamic_network_architectures.architectures.unet.PlainConvUNet",
                 "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet",
                 "dynamic_network_architectures.architectures.unet.ResidualUNet")
CORD_NAMES = ("sc", "cord", "spinal_cord", "spinalcord", "seg_sc", "sc_seg")
LESION_NAMES = ("lesion", "lesions", "ms_lesion", "ms_lesions", "lesion_seg")


def is_nnunet_folder(path: Path) -> bool:
    return (path / "plans.json").is_file() and (path / "dataset.json").is_file()


def trainer_folder(path: Path) -> Path | None:
    """``path`` itself if it is an nnU-Net results folder, else its only ``nnUNetTrainer*``
    subfolder (SCT's model folders hold one), else None."""
    if is_nnunet_folder(path):
        return path
    inner = [p for p in sorted(path.glob("*__*__*")) if p.is_dir() and is_nnunet_folder(p)]
    return inner[0] if len(inner) == 1 else None


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise MssegError(f"{path}: cannot read JSON ({exc})") from exc


@dataclass(frozen=True)
class LabelMap:
    """``dataset.json``'s labels: region-based (sigmoid heads, ``regions_class_order``) or
    plain labels (softmax, argmax)."""
    labels: dict[str, tuple[int, ...]]     # name -> label values (background excluded)
    regions: tuple[tuple[int, ...], ...]   # head -> label values it covers (region-based)
    class_order: tuple[int, ...]           # head -> label value painted (region-based)

    @classmethod
    def from_dataset(cls, dataset: dict, where: str = "dataset.json") -> LabelMap:
        raw = dataset.get("labels")
        if not isinstance(raw, dict) or "background" not in raw:
            raise MssegError(f"{where}: no 'labels' with a background label")
        labels = {}
        for name, value in raw.items():
            if name in ("background", "ignore"):
                continue
            values = tuple(int(v) for v in (value if isinstance(value, list) else [value]))
            labels[name] = values
        region_based = any(len(v) > 1 for v in labels.values())
        if not region_based:
            return cls(labels, (), ())
        order = dataset.get("regions_class_order")
        if order is None or len(order) != len(labels):
            raise MssegError(f"{where}: region-based labels need regions_class_order with one "
                             f"entry per region ({len(labels)})")
        return cls(labels, tuple(labels.values()), tuple(int(c) for c in order))

    @property
    def region_based(self) -> bool:
        return bool(self.regions)

    @property
    def heads(self) -> int:
        """Network output channels: one per region, or one per label + background."""
        if self.region_based:
            return len(self.regions)
        return max(v for values in self.labels.values() for v in values) + 1

    def background(self) -> np.ndarray:
        """Per-head probability outside nnU-Net's non-zero crop (label 0 everywhere)."""
        value = np.zeros(self.heads, np.float32)
        if not self.region_based:
            value[0] = 1
        return value

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Sigmoid per region head, or softmax over the label channels (float32, in place)."""
        if self.region_based:
            with np.errstate(over="ignore"):
                np.negative(logits, out=logits)
                np.exp(logits, out=logits)
            logits += 1
            return np.reciprocal(logits, out=logits)
        logits -= logits.max(0, keepdims=True)
        np.exp(logits, out=logits)
        logits /= logits.sum(0, keepdims=True)
        return logits

    def label_map(self, probabilities: np.ndarray, threshold: float = 0.5) -> np.ndarray:
        """nnU-Net's segmentation: regions painted in ``regions_class_order`` where their
        probability exceeds ``threshold`` (0.5), or the argmax of the label channels."""
        if not self.region_based:
            return probabilities.argmax(0).astype(np.uint16)
        seg = np.zeros(probabilities.shape[1:], np.uint16)
        for head, value in enumerate(self.class_order):
            seg[probabilities[head] > threshold] = value
        return seg

    def outputs(self) -> dict[str, tuple[int, ...]]:
        """msseg's named outputs and the label values each covers: labels with the field's
        cord / lesion names become ``cord`` / ``lesion`` (with plain labels, the cord also
        covers the lesion values: msseg's cord mask is cord ∪ lesion, as SCT's region-based
        ``sc`` label is), other labels keep their name."""
        named: dict[str, tuple[int, ...]] = {}
        for label, values in self.labels.items():
            out = self.msseg_name(label)
            named[out] = tuple(dict.fromkeys(named.get(out, ()) + values))
        if not self.region_based and "cord" in named and "lesion" in named:
            named["cord"] = tuple(dict.fromkeys(named["cord"] + named["lesion"]))
        return named

    def named_maps(self, seg: np.ndarray, probabilities: np.ndarray
                   ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """(masks, probability maps) by msseg name: a mask holds the voxels whose label is
        among the output's values; its probability is its region's head (region-based) or
        the summed softmax channels of its values."""
        masks, probs = {}, {}
        for name, values in self.outputs().items():
            masks[name] = np.isin(seg, values)
            if self.region_based:
                heads = [i for i, r in enumerate(self.regions) if set(r) == set(values)]
                probs[name] = (probabilities[heads[0]] if heads else
                               masks[name].astype(np.float32))
            else:
                probs[name] = probabilities[list(values)].sum(0)
        return masks, probs

    def msseg_name(self, name: str) -> str:
        """``cord`` / ``lesion`` for the names the field uses, else the label's own name."""
        key = name.lower()
        if key in CORD_NAMES:
            return "cord"
        if key in LESION_NAMES:
            return "lesion"
        return re.sub(r"[^A-Za-z0-9]", "", name) or "label"


@dataclass(frozen=True)
class NnunetFolder:
    """An nnU-Net v2 results folder (``Trainer__Plans__configuration``)."""
    path: Path

    @property
    def task(self) -> str:
        return "nnunet"

    @cached_property
    def plans(self) -> dict:
        return _read_json(self.path / "plans.json")

    @cached_property
    def dataset(self) -> dict:
        return _read_json(self.path / "dataset.json")

    @cached_property
    def label_map(self) -> LabelMap:
        return LabelMap.from_dataset(self.dataset, str(self.path / "dataset.json"))

    def checkpoint(self, fold: str) -> Path:
        for name in CHECKPOINTS:
            if (self.path / f"fold_{fold}" / name).is_file():
                return self.path / f"fold_{fold}" / name
        raise MssegError(f"{self.path}: fold {fold} has no {' or '.join(CHECKPOINTS)}")

    @property
    def folds(self) -> list[str]:
        """Folds with a checkpoint, in nnU-Net's order (numbers, then ``all``)."""
        found = [p.name[5:] for p in self.path.glob("fold_*") if p.is_dir()
                 and any((p / c).is_file() for c in CHECKPOINTS)]
        return sorted(found, key=lambda f: (not f.isdigit(), int(f) if f.isdigit() else 0))

    def select_folds(self, spec: str | None) -> list[str]:
        """``None`` / ``all``-present default, or ``0,1,2`` / ``all`` (the fold named all)."""
        available = self.folds
        if not available:
            raise MssegError(f"{self.path}: no fold_*/checkpoint_final.pth")
        if spec is None:
            return available
        wanted = [f.strip() for f in str(spec).split(",") if f.strip()]
        missing = [f for f in wanted if f not in available]
        if missing or not wanted:
            raise MssegError(f"{self.path}: --folds {spec}: not available (available: "
                             f"{', '.join(available)})")
        return wanted

    @property
    def configuration(self) -> str:
        """From the folder name (``Trainer__Plans__configuration``), else the first fold's
        checkpoint."""
        parts = self.path.name.split("__")
        if len(parts) == 3 and parts[2] in self.plans.get("configurations", {}):
            return parts[2]
        return load_checkpoint(self.checkpoint(self.folds[0]))["init_args"]["configuration"]

    @cached_property
    def config(self) -> dict:
        """The configuration's plan entry, with ``inherits_from`` resolved."""
        return resolved_configuration(self.plans, self.configuration)

    @property
    def input_channels(self) -> int:
        channels = self.dataset.get("channel_names") or self.dataset.get("modality") or {"0": ""}
        return len(channels)

    @property
    def plan(self) -> NnunetPlan:
        return nnunet_plan(self.plans, self.config, self.configuration, self.dataset,
                           str(self.path))

    @property
    def outputs(self) -> tuple[str, ...]:
        return tuple(self.label_map.outputs())

    @property
    def card(self) -> str:
        card = self.path / "model_card.md"
        if card.is_file():
            return card.read_text()
        if (self.path.parent / "model_card.md").is_file():
            return (self.path.parent / "model_card.md").read_text()
        return describe(self)

    def networks(self, folds: list[str], device: str = "cpu") -> list:
        """One network per fold, weights loaded, in eval mode."""
        nets = []
        for fold in folds:
            state = load_checkpoint(self.checkpoint(fold))
            net = build_network(self.config["architecture"], self.input_channels,
                                self.label_map.heads, str(self.path / "plans.json"))
            try:
                net.load_state_dict(state["network_weights"])
            except (KeyError, RuntimeError) as exc:
                raise MssegError(f"{self.checkpoint(fold)}: weights do not fit the plan's "
                                 f"network ({str(exc).splitlines()[0]})") from exc
            nets.append(net.to(device).eval())
        return nets

    def mirror_axes(self, fold: str) -> tuple[int, ...]:
        state = load_checkpoint(self.checkpoint(fold))
        axes = state.get("inference_allowed_mirroring_axes")
        return tuple(int(a) for a in axes) if axes else tuple(range(len(self.plan.patch_size)))


def resolved_configuration(plans: dict, name: str) -> dict:
    configs = plans.get("configurations", {})
    if name not in configs:
        raise MssegError(f"plans.json has no configuration {name!r} "
                         f"(has: {', '.join(configs) or 'none'})")
    config = dict(configs[name])
    seen = {name}
    while "inherits_from" in config:
        parent = config.pop("inherits_from")
        if parent in seen or parent not in configs:
            raise MssegError(f"plans.json: configuration {name!r} inherits from {parent!r}")
        seen.add(parent)
        config = {**configs[parent], **config}
    if config.get("previous_stage") or "cascade" in name:
        raise MssegError(f"configuration {name!r} is a cascade stage: not supported")
    return config


def nnunet_plan(plans: dict, config: dict, name: str, dataset: dict, where: str) -> NnunetPlan:
    """The preprocessing of one configuration, checked against what msseg reproduces."""
    schemes = config.get("normalization_schemes", ["ZScoreNormalization"])
    if len(schemes) != 1:
        raise MssegError(f"{where}: the model takes {len(schemes)} input channels; msseg "
                         "segment runs single-channel models")
    for key in ("resampling_fn_data", "resampling_fn_probabilities"):
        if config.get(key, "resample_data_or_seg_to_shape") != "resample_data_or_seg_to_shape":
            raise MssegError(f"{where}: {key} {config[key]!r} is not supported "
                             "(only nnU-Net's default resample_data_or_seg_to_shape)")
    data_kw = config.get("resampling_fn_data_kwargs", {})
    prob_kw = config.get("resampling_fn_probabilities_kwargs", {})
    props = plans.get("foreground_intensity_properties_per_channel", {}).get("0", {})
    orientation = dataset.get("image_orientation")
    return NnunetPlan(
        configuration=name, spacing=tuple(float(s) for s in config["spacing"]),
        patch_size=tuple(int(p) for p in config["patch_size"]),
        transpose_forward=tuple(int(a) for a in plans.get("transpose_forward", (0, 1, 2))),
        normalization=schemes[0],
        use_mask_for_norm=bool(config.get("use_mask_for_norm", [False])[0]),
        intensity=props, data_order=int(data_kw.get("order", 3)),
        data_order_z=int(data_kw.get("order_z", 0)),
        probabilities_order=int(prob_kw.get("order", 1)),
        probabilities_order_z=int(prob_kw.get("order_z", 0)),
        force_separate_z=data_kw.get("force_separate_z"),
        reader=plans.get("image_reader_writer", "SimpleITKIO"),
        orientation=sct_to_nibabel(orientation) if orientation else None)


def build_network(architecture: dict, in_channels: int, heads: int, where: str):
    """The plan's network (``dynamic-network-architectures``), deep supervision off."""
    name = architecture.get("network_class_name", "")
    if name not in ARCHITECTURES:
        raise MssegError(f"{where}: network class {name!r} is not supported "
                         f"(supported: {', '.join(a.rsplit('.', 1)[1] for a in ARCHITECTURES)})")
    kwargs = dict(architecture.get("arch_kwargs", {}))
    for key in architecture.get("_kw_requires_import", []):
        if kwargs.get(key) is not None:
            kwargs[key] = _torch_layer(kwargs[key], where)
    kwargs["deep_supervision"] = False
    try:
        cls = pydoc.locate(name)
    except pydoc.ErrorDuringImport as exc:  # pragma: no cover - install problem
        raise MssegError(f"cannot import {name}: {exc}") from exc
    if cls is None:
        raise MssegError("dynamic-network-architectures is not installed: "
                         "pip install dynamic-network-architectures")
    try:
        return cls(input_channels=in_channels, num_classes=heads, **kwargs)
    except TypeError as exc:
        raise MssegError(f"{where}: architecture arguments do not fit {name} ({exc})") from exc


def _torch_layer(dotted: str, where: str):
    """A layer class named in a plan: only ``torch.nn`` classes are imported."""
    import torch

    layer = pydoc.locate(dotted) if str(dotted).startswith("torch.nn.") else None
    if not (isinstance(layer, type) and issubclass(layer, torch.nn.Module)):
        raise MssegError(f"{where}: layer {dotted!r} is not a torch.nn module")
    return layer


def load_checkpoint(path: Path) -> dict:
    """An nnU-Net checkpoint, unpickled with only tensors, containers and NumPy scalars."""
    import torch

    allowed = [np.dtype, np.ndarray, *_numpy_globals()]
    try:
        with torch.serialization.safe_globals(allowed):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle raises many types for foreign or corrupt files
        raise MssegError(f"{path}: cannot load checkpoint safely "
                         f"({str(exc).splitlines()[0][:200]})") from exc
    if "network_weights" not in state:
        raise MssegError(f"{path}: not an nnU-Net checkpoint (no network_weights)")
    return state


def _numpy_globals() -> list:
    """The NumPy reconstructors and dtype classes that scalars in a pickle refer to."""
    found = []
    for module_name in ("numpy._core.multiarray", "numpy.core.multiarray"):
        module = pydoc.locate(module_name)
        if module is not None:
            found += [getattr(module, n) for n in ("scalar", "_reconstruct") if hasattr(module, n)]
    dtypes = pydoc.locate("numpy.dtypes")
    if dtypes is not None:
        found += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType")]
    return found


def describe(model: NnunetFolder) -> str:
    """A model card generated from the folder (source, plan, labels, folds)."""
    plan = model.plan
    labels = ", ".join(f"{n} {list(v)}" for n, v in model.label_map.labels.items())
    kind = ("region-based (sigmoid; regions_class_order "
            f"{list(model.label_map.class_order)})" if model.label_map.region_based
            else "labels (softmax)")
    return "\n".join([
        f"# nnU-Net v2 model: {model.path.name}",
        "",
        f"- source: {model.path}",
        f"- dataset: {model.plans.get('dataset_name', '?')}; configuration "
        f"{plan.configuration}; trainer folder {model.path.name}",
        f"- spacing {list(plan.spacing)} mm, patch {list(plan.patch_size)}, "
        f"normalisation {plan.normalization}",
        f"- network: {model.config['architecture']['network_class_name'].rsplit('.', 1)[1]}",
        f"- labels: {labels}; {kind}",
        f"- folds: {', '.join(model.folds) or 'none'}",
        f"- image orientation: {model.dataset.get('image_orientation', 'as stored')}",
        "",
        "Imported as is: msseg did not train or measure this model; see its source for the "
        "data it was trained and evaluated on.",
    ])
