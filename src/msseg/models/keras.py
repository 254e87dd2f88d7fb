"""Keras 2 model files (``.h5``) as msseg networks: read with h5py, rebuilt in PyTorch.

Design notes: docs/explanation/design-notes.md#mssegmodelskeras.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from msseg.errors import MssegError

SUPPORTED = ("InputLayer", "Conv2D", "Conv3D", "Conv2DTranspose", "BatchNormalization",
             "Activation", "Dropout", "SpatialDropout2D", "SpatialDropout3D", "MaxPooling2D",
             "MaxPooling3D", "UpSampling2D", "UpSampling3D", "Concatenate", "Lambda")
ACTIVATIONS = ("linear", "relu", "sigmoid", "tanh", "softmax")
#: Python-2 bytecode of ``lambda z: z / temperature`` as Keras 2.0.6 marshals it: LOAD_FAST 0,
#: LOAD_DEREF 0, BINARY_TRUE_DIVIDE, RETURN_VALUE (SCT's CNN1 files; the closure holds the
#: temperature).
_DIVIDE_BYTECODE = "|\x00\x00\x88\x00\x00\x1bS"


@dataclass(frozen=True)
class Layer:
    name: str
    kind: str
    config: dict
    inputs: tuple[str, ...]


@dataclass(frozen=True)
class KerasModel:
    """A Keras functional model read from ``path``: its layers in file order (a topological
    order, as Keras saves them), weights by layer, and the layout of its tensors."""
    path: Path
    layers: tuple[Layer, ...]
    weights: dict[str, list[np.ndarray]]
    output: str
    layout: str                     # channels_first | channels_last
    input_shape: tuple              # the file's batch_input_shape without the batch axis

    @property
    def dims(self) -> int:
        return len(self.input_shape) - 1

    @property
    def spatial_shape(self) -> tuple:
        """The input's spatial shape (None where the model takes any size)."""
        shape = self.input_shape
        return tuple(shape[1:] if self.layout == "channels_first" else shape[:-1])

    @property
    def in_channels(self) -> int:
        return int(self.input_shape[0 if self.layout == "channels_first" else -1])

    @property
    def parameters(self) -> int:
        """Stored values (BatchNormalization statistics included), as Keras counts them."""
        return int(sum(w.size for ws in self.weights.values() for w in ws))


def read_keras(path: str | Path) -> KerasModel:
    """Read a Keras ``.h5`` model file; :class:`MssegError` naming the file on anything that
    is not a supported Keras functional model."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise MssegError(f"{path}: no such file")
    try:
        with h5py.File(path, "r") as f:
            raw = f.attrs.get("model_config")
            if raw is None:
                raise MssegError(f"{path}: not a Keras model file (no model_config)")
            config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
            group = f["model_weights"] if "model_weights" in f else f
            layers = _layers(path, config)
            weights = {layer.name: _weights_of(group, layer.name) for layer in layers}
    except MssegError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise MssegError(f"{path}: cannot read the Keras model, the file is truncated or "
                         f"damaged ({type(exc).__name__}: {exc})") from exc
    layout = _layout(path, layers)
    inputs = [la for la in layers if la.kind == "InputLayer"]
    if len(inputs) != 1:
        raise MssegError(f"{path}: {len(inputs)} input layers; msseg runs one-input models")
    outputs = config["config"].get("output_layers") or [[layers[-1].name]]
    if len(outputs) != 1:
        raise MssegError(f"{path}: {len(outputs)} outputs; msseg runs one-output models")
    shape = tuple(inputs[0].config["batch_input_shape"][1:])
    model = KerasModel(path, tuple(layers), weights, outputs[0][0], layout, shape)
    _check_channels(model)
    return model


def _layers(path: Path, config: dict) -> list[Layer]:
    if config.get("class_name") not in ("Model", "Functional", "Sequential"):
        raise MssegError(f"{path}: model class {config.get('class_name')!r} is not a Keras "
                         "functional model")
    body = config["config"]
    raw_layers = body["layers"] if isinstance(body, dict) else body
    layers = []
    previous = None
    for raw in raw_layers:
        kind = raw["class_name"]
        if kind not in SUPPORTED:
            raise MssegError(f"{path}: layer {raw['config'].get('name', '?')!r} of type {kind} "
                             f"is not supported (supported: {', '.join(SUPPORTED)})")
        name = raw.get("name") or raw["config"]["name"]
        nodes = raw.get("inbound_nodes")
        if nodes is None:     # Sequential: each layer takes the previous one
            inputs = () if previous is None else (previous,)
        else:
            if len(nodes) > 1:
                raise MssegError(f"{path}: layer {name!r} is shared between several inputs; "
                                 "not supported")
            inputs = tuple(n[0] for n in nodes[0]) if nodes else ()
        layers.append(Layer(name, kind, raw["config"], inputs))
        previous = name
    if layers and layers[0].kind != "InputLayer":   # Sequential: the input is implicit
        shape = layers[0].config.get("batch_input_shape")
        if shape is None:
            raise MssegError(f"{path}: the model does not state its input shape")
        layers.insert(0, Layer("input", "InputLayer", {"batch_input_shape": shape}, ()))
        layers[1] = Layer(layers[1].name, layers[1].kind, layers[1].config, ("input",))
    return layers


def _weights_of(group, name: str) -> list[np.ndarray]:
    if name not in group:
        return []
    layer = group[name]
    names = [n.decode() if isinstance(n, bytes) else n
             for n in layer.attrs.get("weight_names", [])]
    return [np.asarray(layer[n], dtype=np.float32) for n in names]


def _layout(path: Path, layers: list[Layer]) -> str:
    formats = {la.config["data_format"] for la in layers if "data_format" in la.config}
    if len(formats) > 1:
        raise MssegError(f"{path}: layers mix data formats ({', '.join(sorted(formats))}); "
                         "channels layout mismatch")
    return formats.pop() if formats else "channels_last"


def _check_channels(model: KerasModel) -> None:
    """Follow the channel count through the graph: every kernel, normalisation and
    concatenation axis must agree with the file's layout, else it is a layout mismatch."""
    rank = model.dims + 2
    channel_axes = {1} if model.layout == "channels_first" else {-1, rank - 1}
    channels: dict[str, int] = {}
    for layer in model.layers:
        ins = [channels[i] for i in layer.inputs]
        weights = model.weights[layer.name]
        if layer.kind == "InputLayer":
            n = model.in_channels
            if n is None or n < 1:
                raise _mismatch(model, layer, f"input shape {model.input_shape} has no channel "
                                f"axis where {model.layout} puts it")
            channels[layer.name] = n
            continue
        if layer.kind in ("Conv2D", "Conv3D"):
            if weights[0].shape[-2] != ins[0]:
                raise _mismatch(model, layer, f"kernel takes {weights[0].shape[-2]} channels, "
                                f"the layer gets {ins[0]}")
            channels[layer.name] = int(weights[0].shape[-1])
        elif layer.kind == "Conv2DTranspose":
            if weights[0].shape[-1] != ins[0]:
                raise _mismatch(model, layer, f"kernel takes {weights[0].shape[-1]} channels, "
                                f"the layer gets {ins[0]}")
            channels[layer.name] = int(weights[0].shape[-2])
        elif layer.kind == "BatchNormalization":
            if layer.config.get("axis") not in channel_axes:
                raise _mismatch(model, layer, f"normalises axis {layer.config.get('axis')}, "
                                f"not the {model.layout} channel axis")
            if any(w.shape != (ins[0],) for w in weights):
                raise _mismatch(model, layer, f"statistics of {weights[0].shape[0]} channels, "
                                f"the layer gets {ins[0]}")
            channels[layer.name] = ins[0]
        elif layer.kind == "Concatenate":
            if layer.config.get("axis") not in channel_axes:
                raise _mismatch(model, layer, f"concatenates axis {layer.config.get('axis')}, "
                                f"not the {model.layout} channel axis")
            channels[layer.name] = sum(ins)
        else:
            channels[layer.name] = ins[0]


def _mismatch(model: KerasModel, layer: Layer, why: str) -> MssegError:
    return MssegError(f"{model.path}: channels layout mismatch at layer {layer.name!r} "
                      f"({layer.kind}): {why}")


def lambda_divisor(model: KerasModel, layer: Layer) -> float:
    """The temperature of SCT's ``Lambda(lambda z: z / temperature)``; any other Lambda is
    refused (its code cannot be run safely, nor at all across Python versions)."""
    function = layer.config.get("function")
    if (layer.config.get("function_type") == "lambda" and isinstance(function, list)
            and len(function) == 3 and isinstance(function[0], str)
            and function[0].find(_DIVIDE_BYTECODE) >= 0 and "temperature" in function[0]
            and isinstance(function[2], list) and len(function[2]) == 1
            and isinstance(function[2][0], int | float) and function[2][0] != 0
            and not layer.config.get("arguments")):
        return float(function[2][0])
    raise MssegError(f"{model.path}: layer {layer.name!r} is a Lambda msseg cannot read (only "
                     "SCT's 'divide by temperature' Lambda is supported)")
