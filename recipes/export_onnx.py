"""Add ``model.onnx`` to model folders packaged before msseg exported ONNX (the bundled ones).

Run: .venv/bin/python recipes/export_onnx.py [MODEL_FOLDER …]   (default: every bundled model)
"""

from __future__ import annotations

import sys
from pathlib import Path

from msseg.models.registry import bundled_models, open_model
from msseg.training.package import write_onnx


def main() -> None:
    models = [open_model(Path(p)) for p in sys.argv[1:]] or bundled_models()
    for model in models:
        difference = write_onnx(model)
        size = (model.path / "model.onnx").stat().st_size / 1e6
        print(f"{model.path.name}: model.onnx {size:.1f} MB, largest |ONNX − torch| on a "
              f"random batch {difference:.1e}")


if __name__ == "__main__":
    main()
