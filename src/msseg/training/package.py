"""Package a training checkpoint as a model folder: weights, plan, card and the ONNX export."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch

from msseg.errors import MssegError
from msseg.models.backends import OnnxNetwork, export_onnx
from msseg.models.registry import ModelFolder, open_model
from msseg.preprocess.plan import Plan
from msseg.training.config import TrainConfig


def package_checkpoint(checkpoint: str | Path, out: str | Path, card: str,
                       plan_changes: dict | None = None) -> ModelFolder:
    """Write a model folder from a training checkpoint (float32 weights only) and a card;
    ``plan_changes`` (e.g. a tuned ``threshold``) are written into its plan."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    config = TrainConfig.from_dict(state["config"])
    config.to_yaml(tmp / "config.yaml")
    plan = {**state["plan"], **(plan_changes or {})}
    Plan.from_dict(plan)    # a bad change fails here, not at the user's first segment
    (tmp / "plan.json").write_text(json.dumps(plan, indent=1))
    weights = {k: v.float() for k, v in state["model"].items()}
    torch.save(weights, tmp / "model.pt")
    (tmp / "model_card.md").write_text(card)
    write_onnx(ModelFolder(tmp))
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return open_model(out)


def write_onnx(model: ModelFolder, tolerance: float = 1e-3) -> float:
    """Export the model's network to ``model.onnx`` (what msseg runs on the CPU) and check
    that ONNX Runtime and PyTorch agree on a random input; returns the largest difference."""
    network = model.load_network("cpu")
    shape = (2, 1, *model.plan.patch_size)
    path = export_onnx(network, model.path / "model.onnx", shape, model.whole_slice)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = network(x).numpy()
    difference = float(abs(OnnxNetwork(path, 1)(x.numpy()) - expected).max())
    if difference > tolerance * max(1.0, float(abs(expected).max())):
        path.unlink()
        raise MssegError(f"{model.path}: ONNX export differs from PyTorch by {difference:.2e}")
    return difference
