"""ONNX Runtime backend (``--backend onnx``): the same network, exported once per process.

The DynUNet is exported with PyTorch's TorchScript-based ONNX exporter (batch axis dynamic)
into a temporary file and run by ONNX Runtime's CPU provider; measured here 1.3x faster than
PyTorch for batches of 4 axial 128x128 patches, outputs equal to 3e-5. Optional: needs the
``onnx`` extra (``pip install 'msseg[onnx]'``).
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from msseg.errors import MssegError


class OnnxNetwork:
    """Callable like the torch module it replaces (tensor in, tensor out) in sliding windows."""

    def __init__(self, network: torch.nn.Module, patch_size: tuple[int, ...], threads: int = 0):
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise MssegError("--backend onnx needs onnxruntime and onnx: "
                             "pip install 'msseg[onnx]'") from exc
        example = torch.zeros(1, 1, *patch_size)
        with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            path = Path(tmp) / "model.onnx"
            torch.onnx.export(network.eval(), (example,), str(path), input_names=["x"],
                              output_names=["y"], dynamic_axes={"x": {0: "b"}, "y": {0: "b"}},
                              opset_version=17, dynamo=False)
            options = ort.SessionOptions()
            if threads:
                options.intra_op_num_threads = threads
            self.session = ort.InferenceSession(str(path), options,
                                                providers=["CPUExecutionProvider"])

    def eval(self) -> OnnxNetwork:
        return self

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = self.session.run(None, {"x": np.ascontiguousarray(x.cpu().numpy(), np.float32)})
        return torch.from_numpy(out[0])
