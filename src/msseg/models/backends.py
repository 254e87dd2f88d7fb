"""Running a network on NumPy batches: ONNX Runtime (the CPU default) or PyTorch.

Design notes: docs/explanation/design-notes.md#mssegmodelsbackends.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

from msseg.errors import MssegError


def cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


class OnnxNetwork:
    """An ONNX model run by ONNX Runtime's CPU provider."""

    def __init__(self, path: str | Path, threads: int = 0):
        try:
            import onnxruntime as ort
        except ImportError as exc:  # pragma: no cover - a core dependency
            raise MssegError("ONNX Runtime is not installed: pip install onnxruntime") from exc
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or cores()
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), options,
                                            providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input: np.ascontiguousarray(batch, np.float32)})[0]


class TorchNetwork:
    """A torch module in eval mode, NumPy in and out."""

    def __init__(self, module, device: str = "cpu", threads: int = 0):
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.module, self.device = module.to(device).eval(), torch.device(device)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(batch, np.float32)).to(self.device)
            return self.module(x).float().cpu().numpy()


def export_onnx(module, path: str | Path, example_shape: tuple[int, ...],
                dynamic_spatial: bool = False) -> Path:
    """Export a torch module to ONNX (opset 17, TorchScript exporter): batch axis dynamic, and
    the spatial axes too with ``dynamic_spatial`` (whole-slice networks such as CNN1)."""
    import torch

    path = Path(path)
    axes = {0: "b"}
    if dynamic_spatial:
        axes.update({i: f"s{i}" for i in range(2, len(example_shape))})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.cpu().eval(), (torch.zeros(example_shape),), str(path),
                          input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": axes, "y": dict(axes)}, opset_version=17,
                          dynamo=False)
    return path


def onnx_from_torch(module, example_shape: tuple[int, ...], threads: int = 0,
                    dynamic_spatial: bool = False) -> OnnxNetwork:
    """A torch module exported to a temporary ONNX file and loaded in ONNX Runtime."""
    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(module, Path(tmp) / "model.onnx", example_shape, dynamic_spatial)
        return OnnxNetwork(path, threads)


def backend_for(requested: str, device: str, has_onnx: bool) -> str:
    """``auto``: ONNX Runtime on the CPU for a model that ships an ONNX file, else PyTorch."""
    if requested not in ("auto", "onnx", "torch"):
        raise MssegError(f"--backend {requested!r}: must be auto, onnx or torch")
    if requested == "onnx" and device != "cpu":
        raise MssegError("--backend onnx runs on the CPU (--device cpu)")
    if requested == "auto":
        return "onnx" if device == "cpu" and has_onnx else "torch"
    return requested
