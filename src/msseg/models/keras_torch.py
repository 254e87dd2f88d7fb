"""A Keras graph (:class:`msseg.models.keras.KerasModel`) run by PyTorch, channels first.

Weight layouts (Keras → PyTorch): ConvND kernel ``(*k, in, out)`` → ``(out, in, *k)``;
Conv2DTranspose kernel ``(kh, kw, out, in)`` → ``(in, out, kh, kw)``; the spatial axes keep
their order (no flip), which the network-output tests against SCT's own conversions check.
'same' padding at stride 1 pads ``dilation · (k − 1) / 2`` on each side (odd kernels).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from msseg.errors import MssegError
from msseg.models.keras import ACTIVATIONS, KerasModel, Layer, lambda_divisor


class KerasModule(nn.Module):
    def __init__(self, model: KerasModel):
        super().__init__()
        self.order: list[tuple[str, tuple[str, ...]]] = []
        self.ops = nn.ModuleDict()
        self.input = next(la.name for la in model.layers if la.kind == "InputLayer")
        self.output = model.output
        for layer in model.layers:
            if layer.kind == "InputLayer":
                continue
            self.ops[_key(layer.name)] = _op(model, layer, model.dims)
            self.order.append((layer.name, layer.inputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values = {self.input: x}
        for name, inputs in self.order:
            values[name] = self.ops[_key(name)](*(values[i] for i in inputs))
        return values[self.output]


def _key(name: str) -> str:
    return name.replace(".", "_")


class _Concat(nn.Module):
    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.cat(xs, dim=1)


class _Divide(nn.Module):
    def __init__(self, divisor: float):
        super().__init__()
        self.divisor = divisor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x / self.divisor


class _Upsample(nn.Module):
    """Keras UpSampling: each voxel repeated ``size`` times along each spatial axis."""

    def __init__(self, size: tuple[int, ...]):
        super().__init__()
        self.size = tuple(float(s) for s in size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.interpolate(x, scale_factor=self.size, mode="nearest")


def _activation(model: KerasModel, layer: Layer, name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise MssegError(f"{model.path}: layer {layer.name!r} has activation {name!r}, not "
                         f"supported ({', '.join(ACTIVATIONS)})")
    return {"linear": nn.Identity(), "relu": nn.ReLU(), "sigmoid": nn.Sigmoid(),
            "tanh": nn.Tanh(), "softmax": nn.Softmax(dim=1)}[name]


def _tensor(array: np.ndarray, *axes: int) -> nn.Parameter:
    return nn.Parameter(torch.from_numpy(np.ascontiguousarray(array.transpose(axes))),
                        requires_grad=False)


def _op(model: KerasModel, layer: Layer, dims: int) -> nn.Module:
    c, w = layer.config, model.weights[layer.name]
    kind = layer.kind
    if kind in ("Conv2D", "Conv3D", "Conv2DTranspose"):
        return _conv(model, layer, dims)
    if kind == "BatchNormalization":
        bn = (nn.BatchNorm2d if dims == 2 else nn.BatchNorm3d)(w[-1].shape[0],
                                                               eps=float(c["epsilon"]))
        i = 0
        with torch.no_grad():
            if c.get("scale", True):
                bn.weight.copy_(torch.from_numpy(w[i]))
                i += 1
            if c.get("center", True):
                bn.bias.copy_(torch.from_numpy(w[i]))
                i += 1
            bn.running_mean.copy_(torch.from_numpy(w[i]))
            bn.running_var.copy_(torch.from_numpy(w[i + 1]))
        return bn
    if kind == "Activation":
        return _activation(model, layer, c["activation"])
    if kind.startswith(("Dropout", "SpatialDropout")):
        return nn.Identity()
    if kind.startswith("MaxPooling"):
        if c.get("padding", "valid") != "valid":
            raise MssegError(f"{model.path}: layer {layer.name!r}: only 'valid' pooling is "
                             "supported")
        pool = nn.MaxPool2d if dims == 2 else nn.MaxPool3d
        return pool(tuple(c["pool_size"]), tuple(c.get("strides") or c["pool_size"]))
    if kind.startswith("UpSampling"):
        if c.get("interpolation", "nearest") != "nearest":
            raise MssegError(f"{model.path}: layer {layer.name!r}: only nearest upsampling is "
                             "supported")
        return _Upsample(tuple(c["size"]))
    if kind == "Concatenate":
        return _Concat()
    if kind == "Lambda":
        return _Divide(lambda_divisor(model, layer))
    raise MssegError(f"{model.path}: layer {layer.name!r} of type {kind} is not supported")


def _conv(model: KerasModel, layer: Layer, dims: int) -> nn.Module:
    c, w = layer.config, model.weights[layer.name]
    kernel, strides = tuple(c["kernel_size"]), tuple(c.get("strides", (1,) * dims))
    dilation = tuple(c.get("dilation_rate", (1,) * dims))
    bias = bool(c.get("use_bias", True))
    transpose = layer.kind == "Conv2DTranspose"
    if c["padding"] == "same" and not transpose:
        if any(s != 1 for s in strides) or any(k % 2 == 0 for k in kernel):
            raise MssegError(f"{model.path}: layer {layer.name!r}: 'same' padding is supported "
                             "at stride 1 with odd kernels only")
        padding = tuple(d * (k - 1) // 2 for d, k in zip(dilation, kernel, strict=True))
    elif c["padding"] == "valid" or (transpose and kernel == strides):
        padding = (0,) * dims   # a transposed conv with kernel = stride: 'same' is 'valid'
    else:
        raise MssegError(f"{model.path}: layer {layer.name!r}: padding {c['padding']!r} is not "
                         "supported")
    axes = tuple(range(dims))
    if transpose:
        out, cin = w[0].shape[-2], w[0].shape[-1]
        conv = nn.ConvTranspose2d(cin, out, kernel, strides, padding, bias=bias,
                                  dilation=dilation)
        conv.weight = _tensor(w[0], dims + 1, dims, *axes)
    else:
        cin, out = w[0].shape[-2], w[0].shape[-1]
        conv = (nn.Conv2d if dims == 2 else nn.Conv3d)(cin, out, kernel, strides, padding,
                                                       dilation=dilation, bias=bias)
        conv.weight = _tensor(w[0], dims + 1, dims, *axes)
    if bias:
        conv.bias = nn.Parameter(torch.from_numpy(w[1].copy()), requires_grad=False)
    act = c.get("activation", "linear")
    return conv if act == "linear" else nn.Sequential(conv, _activation(model, layer, act))


class Float64(nn.Module):
    """A module computed in float64 (float32 in and out): the torch fallback then matches
    SCT's outputs to ~6e-6 where float32 convolutions reach ~1.5e-5."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module.double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x.double()).float()


def build_module(model: KerasModel) -> KerasModule:
    """The model as a torch module in eval mode: ``(B, C, *spatial)`` float32 in and out."""
    return KerasModule(model).eval()
