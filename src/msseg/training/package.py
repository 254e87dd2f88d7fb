"""Package a training checkpoint as a model folder (weights only, with its plan and card)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch

from msseg.models.registry import ModelFolder, open_model
from msseg.training.config import TrainConfig


def package_checkpoint(checkpoint: str | Path, out: str | Path, card: str) -> ModelFolder:
    """Write a model folder from a training checkpoint (float32 weights only) and a card."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    config = TrainConfig.from_dict(state["config"])
    config.to_yaml(tmp / "config.yaml")
    (tmp / "plan.json").write_text(json.dumps(state["plan"], indent=1))
    weights = {k: v.float() for k, v in state["model"].items()}
    torch.save(weights, tmp / "model.pt")
    (tmp / "model_card.md").write_text(card)
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return open_model(out)
