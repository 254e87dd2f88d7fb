"""Model folders and the registry of models bundled inside the package.

A model folder holds ``config.yaml`` (the training config), ``plan.json`` (spacing, patch,
topology), ``model.pt`` (float32 weights only; tens of MB at most) and ``model_card.md`` (task,
training data, validation metrics with their data, date, license). Bundled models live in
``msseg/models/bundled/<task>/`` and are found by task name.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from msseg.errors import MssegError
from msseg.models.networks import build_network
from msseg.training.config import TrainConfig
from msseg.training.planning import Plan

BUNDLED = Path(__file__).parent / "bundled"
FILES = ("config.yaml", "plan.json", "model.pt", "model_card.md")


@dataclass(frozen=True)
class ModelFolder:
    path: Path

    @property
    def task(self) -> str:
        return self.config.task

    @property
    def config(self) -> TrainConfig:
        return TrainConfig.from_yaml(self.path / "config.yaml")

    @property
    def plan(self) -> Plan:
        return Plan.from_dict(json.loads((self.path / "plan.json").read_text()))

    @property
    def card(self) -> str:
        return (self.path / "model_card.md").read_text()

    def load_network(self, device: str | torch.device = "cpu") -> torch.nn.Module:
        network = build_network(self.plan)
        state = torch.load(self.path / "model.pt", map_location=device, weights_only=True)
        network.load_state_dict(state)
        return network.to(device).eval()


def open_model(path: str | Path) -> ModelFolder:
    path = Path(path)
    missing = [f for f in FILES if not (path / f).is_file()]
    if missing:
        raise MssegError(f"{path}: not a model folder (missing {', '.join(missing)})")
    return ModelFolder(path)


def bundled_models() -> list[ModelFolder]:
    if not BUNDLED.is_dir():
        return []
    return [open_model(p) for p in sorted(BUNDLED.iterdir()) if (p / "model.pt").is_file()]


def find_model(task_or_path: str) -> ModelFolder:
    """A bundled model by task name, or a model folder by path."""
    if Path(task_or_path).is_dir():
        return open_model(task_or_path)
    for model in bundled_models():
        if model.path.name == task_or_path:
            return model
    names = ", ".join(m.path.name for m in bundled_models()) or "none"
    raise MssegError(f"unknown task {task_or_path!r} (bundled: {names})")


def package_checkpoint(checkpoint: str | Path, out: str | Path, card: str) -> ModelFolder:
    """Write a model folder from a training checkpoint (weights only) and a model card."""
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
