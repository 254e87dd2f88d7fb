"""The ONNX files shipped with the bundled models compute what their PyTorch weights do."""

from __future__ import annotations

import numpy as np
import pytest

from msseg.models import backends
from msseg.models.registry import bundled_models


@pytest.mark.parametrize("model", bundled_models(), ids=lambda m: m.path.name)
def test_bundled_onnx_matches_torch(model):
    assert model.onnx_path is not None, f"{model.path.name} ships no model.onnx"
    shape = (2, 1, *model.plan.patch_size)   # every bundled network takes one channel
    batch = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    onnx = model.network("onnx")(batch)
    torch_out = model.network("torch")(batch)
    assert onnx.shape == torch_out.shape
    assert np.abs(onnx - torch_out).max() < 1e-3 * max(1.0, np.abs(torch_out).max())


def test_backend_choice():
    assert backends.backend_for("auto", "cpu", has_onnx=True) == "onnx"
    assert backends.backend_for("auto", "cpu", has_onnx=False) == "torch"
    assert backends.backend_for("auto", "cuda", has_onnx=True) == "torch"
    with pytest.raises(Exception, match="CPU"):
        backends.backend_for("onnx", "cuda", has_onnx=True)
