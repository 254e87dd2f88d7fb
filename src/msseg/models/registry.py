"""Model folders: bundled with the package, imported into the user's store, or given by path.

Design notes: docs/explanation/design-notes.md#mssegmodelsregistry.
"""

from __future__ import annotations

import datetime
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml

from msseg.errors import MssegError
from msseg.models.nnunet_folder import NnunetFolder, describe, trainer_folder
from msseg.models.sct import SctModel
from msseg.preprocess.plan import Plan

BUNDLED = Path(__file__).parent / "bundled"
FILES = ("config.yaml", "plan.json", "model.pt", "model_card.md")


@dataclass(frozen=True)
class ModelFolder:
    path: Path

    @property
    def task(self) -> str:
        raw = yaml.safe_load((self.path / "config.yaml").read_text()) or {}
        return str(raw.get("task", self.path.name))

    @property
    def plan(self) -> Plan:
        return Plan.from_dict(json.loads((self.path / "plan.json").read_text()))

    @property
    def outputs(self) -> tuple[str, ...]:
        return self.plan.regions

    @property
    def card(self) -> str:
        return (self.path / "model_card.md").read_text()

    @property
    def onnx_path(self) -> Path | None:
        """``model.onnx`` (the same network, exported once when the model was packaged)."""
        path = self.path / "model.onnx"
        return path if path.is_file() else None

    @property
    def whole_slice(self) -> bool:
        """A fully convolutional slice network run on whole slices (CNN1, the centerline)."""
        return self.plan.architecture == "dilated_unet"

    def load_network(self, device: str = "cpu"):
        """The torch module (training, ``--backend torch``, GPUs)."""
        import torch

        from msseg.models.networks import build_network

        network = build_network(self.plan)
        state = torch.load(self.path / "model.pt", map_location=device, weights_only=True)
        network.load_state_dict(state)
        return network.to(device).eval()

    def network(self, backend: str = "auto", device: str = "cpu", threads: int = 0):
        """A NumPy-in, NumPy-out network (:mod:`msseg.models.backends`)."""
        from msseg.models import backends

        kind = backends.backend_for(backend, device, self.onnx_path is not None)
        if kind == "torch":
            return backends.TorchNetwork(self.load_network(device), device, threads)
        if self.onnx_path is not None:
            return backends.OnnxNetwork(self.onnx_path, threads)
        return backends.onnx_from_torch(self.load_network("cpu"),
                                        (1, 1, *self.plan.patch_size), threads,
                                        self.whole_slice)


Model = ModelFolder | NnunetFolder | SctModel
MODEL_FILE_SUFFIXES = (".h5", ".onnx")   # SCT's released models, given as a file


def open_model(path: str | Path) -> Model:
    """An msseg model folder, an nnU-Net results folder (or a folder holding exactly one
    ``nnUNetTrainer*`` results folder, as SCT's downloads do), an SCT model folder of the
    store, or an SCT model file (``.h5`` / ``.onnx``)."""
    from msseg.models import sct

    path = Path(path)
    if path.suffix in MODEL_FILE_SUFFIXES and path.is_file():
        return SctModel.from_file(path)
    if not path.is_dir():
        raise MssegError(f"{path}: no such model folder")
    if sct.is_sct_folder(path):
        return SctModel.from_folder(path)
    nnunet = trainer_folder(path)
    if nnunet is not None:
        return NnunetFolder(nnunet)
    missing = [f for f in FILES if not (path / f).is_file()]
    if missing:
        raise MssegError(f"{path}: not a model folder (missing {', '.join(missing)}; nor an "
                         "nnU-Net folder with plans.json and dataset.json)")
    return ModelFolder(path)


def user_store() -> Path:
    """Where ``msseg models import`` puts models (created on first import)."""
    import platformdirs

    return Path(platformdirs.user_data_dir("msseg")) / "models"


def _models_in(folder: Path) -> list[Model]:
    if not folder.is_dir():
        return []
    found = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            found.append(open_model(sub))
        except MssegError:
            continue
    return found


def bundled_models() -> list[ModelFolder]:
    return [m for m in _models_in(BUNDLED) if isinstance(m, ModelFolder)]


def imported_models() -> list[Model]:
    return _models_in(user_store())


def model_name(model: Model) -> str:
    """The name a model is called by: its folder, or the store folder holding it."""
    store = user_store()
    if store in model.path.parents and model.path.parent != store:
        return model.path.parent.name
    return model.path.name


def find_model(task_or_path: str | Path) -> Model:
    """A model folder (or SCT model file) by path, else a bundled task, else an imported
    model, by name."""
    path = Path(task_or_path)
    if path.is_dir() or (path.suffix in MODEL_FILE_SUFFIXES and path.exists()):
        return open_model(task_or_path)
    for model in [*bundled_models(), *imported_models()]:
        if model_name(model) == str(task_or_path):
            return model
    names = ", ".join(model_name(m) for m in [*bundled_models(), *imported_models()]) or "none"
    raise MssegError(f"unknown task {task_or_path!r} (known: {names})")


def import_model(source: str | Path, name: str | None = None, overwrite: bool = False) -> Model:
    """Copy a model folder into the user's store under ``name``, with a model card that
    states where it came from. nnU-Net folders keep their layout (one results folder); an
    SCT model file becomes a folder with its ONNX export (and a lesion model's CNN1).
    ``name`` None: ``sct_<kind>_<contrast>`` for SCT files, else the folder's name."""
    model = open_model(source)
    if name is None:
        from msseg.models.sct import default_name

        name = default_name(model.kind, model.contrast) if isinstance(model, SctModel) \
            else Path(source).absolute().name
    if not name or not all(c.isalnum() or c in "_-." for c in name) or name.startswith("."):
        raise MssegError(f"model name {name!r}: use letters, digits, '_', '-' or '.'")
    if name in {m.path.name for m in bundled_models()}:
        raise MssegError(f"model name {name!r} is a bundled task; choose another name")
    store = user_store()
    dest = store / name
    if dest.exists() and not overwrite:
        raise MssegError(f"{dest}: a model of that name exists; pass --overwrite to replace it")
    tmp = store / f".{name}.importing"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        if isinstance(model, SctModel):
            from msseg.models.sct import write_folder

            store.mkdir(parents=True, exist_ok=True)
            write_folder(model.path, tmp)
        else:
            tmp.mkdir(parents=True)
            _copy_model(model, tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if dest.exists():
        shutil.rmtree(dest)
    tmp.rename(dest)
    return open_model(dest)


def _copy_model(model: Model, tmp: Path) -> None:
    stamp = datetime.date.today().isoformat()
    source = Path(model.path).resolve()
    if isinstance(model, NnunetFolder):
        inner = tmp / model.path.name
        inner.mkdir()
        for name in ("plans.json", "dataset.json"):
            shutil.copy2(model.path / name, inner / name)
        for fold in model.folds:
            (inner / f"fold_{fold}").mkdir()
            checkpoint = model.checkpoint(fold)
            shutil.copy2(checkpoint, inner / f"fold_{fold}" / checkpoint.name)
        card = describe(NnunetFolder(inner)).replace(f"- source: {inner}", f"- source: {source}")
        (tmp / "model_card.md").write_text(card + f"\nImported into msseg on {stamp}.\n")
        return
    for name in (*FILES, "model.onnx"):
        if (model.path / name).is_file():
            shutil.copy2(model.path / name, tmp / name)
    (tmp / "model_card.md").write_text(model.card.rstrip() + f"\n\nImported into msseg on "
                                       f"{stamp} from {source}.\n")


def import_sct(sct_data: str | Path, overwrite: bool = False) -> list[Model]:
    """Import every SCT model of an SCT data folder (``$SCT_DIR/data``, holding
    ``deepseg_sc_models/`` and ``deepseg_lesion_models/``, or a flat folder of the files) as
    ``sct_lesion_<contrast>`` / ``sct_centerline_<contrast>``. Every file is read first, so a
    bad one stops the import before anything is written."""
    from msseg.models.sct import default_name, import_folder_models

    folder = Path(sct_data)
    if not folder.is_dir():
        raise MssegError(f"{folder}: no such folder")
    files = import_folder_models(folder)
    if not files:
        raise MssegError(f"{folder}: no SCT model file (deepseg_lesion_models/<contrast>_lesion"
                         ".h5|.onnx or deepseg_sc_models/<contrast>_ctr.h5|.onnx)")
    models = [SctModel.from_file(f) for f in files]
    taken = [default_name(m.kind, m.contrast) for m in models
             if (user_store() / default_name(m.kind, m.contrast)).exists()]
    if taken and not overwrite:
        raise MssegError(f"{user_store() / taken[0]}: a model of that name exists; pass "
                         "--overwrite to replace it")
    return [import_model(m.path, None, overwrite) for m in models]
