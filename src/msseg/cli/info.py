"""``msseg info``: what to paste into a bug report — versions of msseg, Python and every
optional part, ONNX Runtime's providers, the threads msseg uses, the model store and the
models it holds."""

from __future__ import annotations

import argparse

OPTIONAL = (("torch", "torch"), ("monai", "torch"), ("dynamic_network_architectures", "torch"),
            ("onnx", "torch"), ("h5py", "torch"), ("skimage", "torch"),
            ("SimpleITK", "register"), ("dask", "dask"), ("distributed", "dask"),
            ("statsmodels", "stats"), ("scikit_posthocs", "stats"))


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="versions, optional parts, threads and models (for bug "
                       "reports)", description=__doc__)
    p.set_defaults(run=run)


def version_of(distribution: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


DISTRIBUTIONS = {"skimage": "scikit-image", "dynamic_network_architectures":
                 "dynamic-network-architectures", "scikit_posthocs": "scikit-posthocs"}


def lines() -> list[str]:
    import platform
    import sys

    from msseg import __version__
    from msseg.models.backends import cores

    out = [f"msseg {__version__}", f"python {platform.python_version()} ({sys.executable})",
           f"platform {platform.platform()}"]
    for name in ("numpy", "scipy", "nibabel", "pandas", "onnxruntime"):
        out.append(f"{name} {version_of(name) or 'MISSING'}")
    for module, extra in OPTIONAL:
        found = version_of(DISTRIBUTIONS.get(module, module))
        out.append(f"{module} {found}" if found else
                   f"{module} not installed (pip install 'msseg[{extra}]')")
    import onnxruntime as ort

    out.append(f"onnxruntime providers: {', '.join(ort.get_available_providers())}")
    out.append(f"threads: {cores()} cores available to this process")
    from msseg.models.registry import bundled_models, imported_models, model_name, user_store

    out.append(f"model store: {user_store()}")
    out.append("bundled models: " + ", ".join(model_name(m) for m in bundled_models()))
    imported = [model_name(m) for m in imported_models()]
    out.append("imported models: " + (", ".join(imported) or "none"))
    return out


def run(args: argparse.Namespace) -> int:
    print("\n".join(lines()))
    return 0
