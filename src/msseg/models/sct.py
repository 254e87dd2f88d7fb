"""SCT's released two-stage models (``sct_deepseg_lesion``'s CNN2, ``sct_deepseg_sc``'s CNN1)
as msseg models, from the user's disk.

Design notes: docs/explanation/design-notes.md#mssegmodelssct.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from msseg.errors import MssegError

MANIFEST = "sct_model.json"
LESION_CONTRASTS = ("t2", "t2_ax", "t2s")
CENTERLINE_CONTRASTS = ("t2", "t2s", "t1", "dwi")
SUFFIXES = (".h5", ".onnx")
#: What SCT's model READMEs say of the training data (``deepseg_lesion_models`` and
#: ``deepseg_sc_models``, README.txt), quoted in the generated cards.
TRAINING = {
    ("lesion", "t2_ax"): "a private dataset including 211 MR volumes (axial T2w, MS patients)",
    ("lesion", "t2"): "a private dataset including 709 MR volumes (T2w, MS patients)",
    ("lesion", "t2s"): "a private dataset including 416 MR volumes (T2*w, MS patients)",
    ("centerline", "t2"): "a private dataset including 840 subjects",
    ("centerline", "t2s"): "a private dataset including 755 subjects",
    ("centerline", "t1"): "a private dataset including 116 subjects",
    ("centerline", "dwi"): "a private dataset including 94 subjects",
}


def identify(path: Path) -> tuple[str, str]:
    """(kind, contrast) of an SCT model file from its name: ``t2_ax_lesion.h5`` ->
    (lesion, t2_ax), ``t2s_ctr.onnx`` -> (centerline, t2s)."""
    stem = path.name[:-len(path.suffix)] if path.suffix in SUFFIXES else path.name
    match = re.fullmatch(r"(.+)_(lesion|ctr)", stem)
    if path.suffix not in SUFFIXES or match is None:
        raise MssegError(f"{path}: not a model file msseg recognises (SCT's released models are "
                         "named <contrast>_lesion.h5 or <contrast>_ctr.h5, or .onnx)")
    contrast, kind = match.group(1), "lesion" if match.group(2) == "lesion" else "centerline"
    known = LESION_CONTRASTS if kind == "lesion" else CENTERLINE_CONTRASTS
    if contrast not in known:
        raise MssegError(f"{path}: SCT {kind} model of unknown contrast {contrast!r} (known: "
                         f"{', '.join(known)})")
    return kind, contrast


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class NetworkFile:
    """One SCT network: its file (.h5 or SCT's .onnx) and msseg's ONNX export of a .h5."""
    source: Path
    onnx: Path | None = None     # msseg's export (channels first); None: not made yet

    @property
    def is_keras(self) -> bool:
        return self.source.suffix == ".h5"

    def check(self) -> None:
        """Refuse a file that is not a readable model before any work (one line)."""
        if self.is_keras:
            from msseg.models.keras import read_keras

            read_keras(self.source)
        else:
            _onnx_session(self.source, 1)

    def network(self, backend: str = "auto", device: str = "cpu", threads: int = 0):
        """(B, C, *spatial) float32 -> (B, 1, *spatial), whatever the file's own layout."""
        from msseg.models import backends

        kind = backends.backend_for(backend, device, True)
        if kind == "torch":
            if not self.is_keras:
                raise MssegError(f"{self.source}: --backend torch needs the Keras .h5 file "
                                 "(an .onnx model runs with --backend onnx)")
            return _torch_network(self.source, device, threads)
        if not self.is_keras:
            return _SctOnnx(self.source, threads)
        onnx = self.onnx if self.onnx is not None and self.onnx.is_file() \
            else cached_export(self.source)
        return backends.OnnxNetwork(onnx, threads)


class _SctOnnx:
    """SCT's own ONNX conversion (input ``input_1``; CNN1 in NHWC), in msseg's layout."""

    def __init__(self, path: Path, threads: int):
        self.session = _onnx_session(path, threads)
        self.input = self.session.get_inputs()[0]
        shape = self.input.shape
        self.channels_last = len(shape) == 4 and shape[-1] == 1 and shape[1] != 1

    def __call__(self, batch):
        import numpy as np

        x = np.ascontiguousarray(np.moveaxis(batch, 1, -1) if self.channels_last else batch,
                                 np.float32)
        y = np.nan_to_num(self.session.run(None, {self.input.name: x})[0])
        return np.moveaxis(y, -1, 1) if self.channels_last else y


def _onnx_session(path: Path, threads: int):
    from msseg.models.backends import OnnxNetwork

    try:
        return OnnxNetwork(path, threads).session
    except MssegError:
        raise
    except Exception as exc:  # onnxruntime raises its own exception types
        raise MssegError(f"{path}: not a readable ONNX model ({type(exc).__name__})") from exc


def _torch_network(path: Path, device: str, threads: int):
    from msseg.models.backends import TorchNetwork
    from msseg.models.keras import read_keras
    from msseg.models.keras_torch import build_module

    module = build_module(read_keras(path))
    if device == "cpu":   # float64 on the CPU: within 1e-5 of SCT's outputs (float32: 2e-5)
        from msseg.models.keras_torch import Float64

        module = Float64(module)
    return TorchNetwork(module, device, threads)


def export(source: Path, dest: Path) -> Path:
    """msseg's ONNX export of a Keras file (channels first, batch axis dynamic)."""
    from msseg.models.backends import export_onnx
    from msseg.models.keras import read_keras
    from msseg.models.keras_torch import build_module

    model = read_keras(source)
    shape = tuple(1 if s is None else s for s in model.spatial_shape)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")   # workers may export at once
    export_onnx(build_module(model), tmp, (1, model.in_channels, *shape),
                dynamic_spatial=any(s is None for s in model.spatial_shape))
    tmp.replace(dest)
    return dest


def cache_path(source: Path) -> Path:
    """Where the ONNX export of a Keras file given by path is cached (keyed by SHA-256)."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("msseg")) / "keras" / f"{sha256(source)}.onnx"


def cached_export(source: Path) -> Path:
    """The ONNX export of a Keras file given by path, made once into the user's cache."""
    dest = cache_path(source)
    return dest if dest.is_file() else export(source, dest)


@dataclass(frozen=True)
class SctModel:
    """An SCT model: a store folder (``sct_model.json``) or a file given by path."""
    path: Path
    kind: str                    # lesion | centerline
    contrast: str
    main: NetworkFile
    centerline: NetworkFile | None = None   # a lesion model's CNN1 (None: msseg's stage 1)
    centerline_contrast: str | None = None
    card_text: str = ""

    @property
    def task(self) -> str:
        return f"sct_{self.kind}"

    @property
    def outputs(self) -> tuple[str, ...]:
        return ("lesion",) if self.kind == "lesion" else ("centerline",)

    @property
    def card(self) -> str:
        return self.card_text or card(self)

    @classmethod
    def from_file(cls, path: Path) -> SctModel:
        path = Path(path).absolute()
        if not path.is_file():
            raise MssegError(f"{path}: no such file")
        kind, contrast = identify(path)
        main = NetworkFile(path)
        main.check()
        ctr, ctr_contrast = None, None
        if kind == "lesion":
            ctr_contrast = contrast.split("_")[0]
            found = find_centerline_file(path.parent, ctr_contrast)
            ctr = NetworkFile(found) if found is not None else None
        return cls(path, kind, contrast, main, ctr, ctr_contrast)

    @classmethod
    def from_folder(cls, folder: Path) -> SctModel:
        try:
            manifest = json.loads((folder / MANIFEST).read_text())
            main = _network_of(folder, manifest["network"])
            ctr = _network_of(folder, manifest["centerline"]) if manifest.get("centerline") \
                else None
            card_path = folder / "model_card.md"
            return cls(folder, manifest["kind"], manifest["contrast"], main, ctr,
                       manifest.get("centerline_contrast"),
                       card_path.read_text() if card_path.is_file() else "")
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise MssegError(f"{folder}: damaged SCT model folder ({MANIFEST}: "
                             f"{type(exc).__name__}: {exc})") from exc


def _network_of(folder: Path, entry: dict) -> NetworkFile:
    onnx = entry.get("onnx")
    return NetworkFile(folder / entry["file"], folder / onnx if onnx else None)


def is_sct_folder(path: Path) -> bool:
    return (Path(path) / MANIFEST).is_file()


def find_centerline_file(folder: Path, contrast: str) -> Path | None:
    """A lesion model's CNN1 beside it: ``<contrast>_ctr.h5|.onnx`` in the same folder or in
    SCT's ``../deepseg_sc_models``."""
    for where in (folder, folder.parent / "deepseg_sc_models"):
        for suffix in SUFFIXES:
            candidate = where / f"{contrast}_ctr{suffix}"
            if candidate.is_file():
                return candidate
    return None


def default_name(kind: str, contrast: str) -> str:
    return f"sct_{kind}_{contrast}"


def write_folder(source: Path, dest: Path) -> SctModel:
    """Build a store folder for an SCT model file at ``dest`` (which must not exist): the
    file, its ONNX export, a lesion model's CNN1 (and its export), manifest and card."""
    model = SctModel.from_file(source)
    dest.mkdir(parents=True)
    manifest = {"kind": model.kind, "contrast": model.contrast,
                "network": _store_network(model.main, dest, "network"),
                "centerline": None, "centerline_contrast": model.centerline_contrast,
                "imported": datetime.date.today().isoformat()}
    if model.centerline is not None:
        model.centerline.check()
        manifest["centerline"] = _store_network(model.centerline, dest, "centerline")
    (dest / MANIFEST).write_text(json.dumps(manifest, indent=1))
    stored = SctModel.from_folder(dest)
    (dest / "model_card.md").write_text(card(stored, manifest))
    return SctModel.from_folder(dest)


def _store_network(network: NetworkFile, dest: Path, stem: str) -> dict:
    name = f"{stem}{network.source.suffix}"
    shutil.copy2(network.source, dest / name)
    entry = {"file": name, "source": str(network.source), "sha256": sha256(network.source)}
    if network.is_keras:
        export(dest / name, dest / f"{stem}.onnx")
        entry["onnx"] = f"{stem}.onnx"
    return entry


def card(model: SctModel, manifest: dict | None = None) -> str:
    """The generated model card of an SCT model: what SCT says of its training, what msseg
    runs, and that msseg did not train it."""
    trained = TRAINING.get((model.kind, model.contrast), "not stated by SCT")
    lines = [f"# {default_name(model.kind, model.contrast)}: SCT's released "
             f"{'lesion (CNN2)' if model.kind == 'lesion' else 'centerline (CNN1)'} model, "
             f"contrast `{model.contrast}`", "",
             "**Not trained by msseg.** Released by the Spinal Cord Toolbox (SCT) for "
             f"`{'sct_deepseg_lesion' if model.kind == 'lesion' else 'sct_deepseg_sc'}` "
             "(Gros et al. 2019, NeuroImage 184:901-915); the weights come from the user's "
             "disk and are not distributed with msseg.", "",
             f"- trained on (SCT's model README): {trained}",
             f"- source file: {manifest['network']['source'] if manifest else model.main.source}"]
    if manifest is not None:
        lines.append(f"- sha256: {manifest['network']['sha256']}")
        lines.append(f"- imported into msseg: {manifest['imported']}")
    if model.kind == "lesion":
        lines += ["- pipeline (as SCT 4.1-7.x): RPI, 0.5 x 0.5 mm in-plane, 48 x 48 crop per "
                  "slice around the centerline, Nyul standardisation, 0.5 mm isotropic, "
                  "48-slice chunks, sigmoid > 0.1, back to the native grid, >= 0.1; no "
                  "post-processing (as SCT)",
                  "- centerline: " + (f"SCT's CNN1 `{model.centerline_contrast}_ctr` heatmap, "
                                      "then msseg's optimal path (SCT's OptiC is closed-source)"
                                      if model.centerline is not None else
                                      "msseg's own stage 1 (no CNN1 file found)")
                  + "; `--centerline FILE` uses a centerline or cord mask as SCT's "
                  "`-centerline file`"]
    agreement = Path(__file__).with_name("sct_agreement.md")
    if agreement.is_file():   # measured by recipes/sct_models/agreement.py, shipped as text
        lines += ["", "#" + agreement.read_text()]
    return "\n".join(lines) + "\n"


def import_folder_models(sct_data: Path) -> list[Path]:
    """SCT model files of an SCT data folder (``$SCT_DIR/data``: ``deepseg_sc_models/`` and
    ``deepseg_lesion_models/``) or of a flat folder holding them, one per name (.onnx
    preferred only where no .h5 is there)."""
    folders = [sct_data / "deepseg_lesion_models", sct_data / "deepseg_sc_models"]
    folders = [f for f in folders if f.is_dir()] or [sct_data]
    found: dict[str, Path] = {}
    for folder in folders:
        for path in sorted(folder.iterdir()):
            if path.suffix not in SUFFIXES:
                continue
            try:
                identify(path)
            except MssegError:
                continue
            stem = path.name[:-len(path.suffix)]
            if stem not in found or path.suffix == ".h5":
                found[stem] = path
    return [found[k] for k in sorted(found)]
