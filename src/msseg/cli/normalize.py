"""``msseg normalize``: intensity normalisation of a NIfTI image, as a model would see it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from msseg import io
from msseg.cli.common import check_outputs
from msseg.errors import MssegError
from msseg.preprocess import intensity

METHODS = ("quantile", "zscore", "minmax", "nyul")
DEFAULT_MODEL = {"nyul": "sc_2stage"}
DEFAULT_TEMPLATE = Path(__file__).parents[1] / "preprocess" / "brain_flair_quantile_template.json"

DESCRIPTION = """\
``msseg normalize``: intensity normalisation of a NIfTI image, as a model would see it.

Methods (:mod:`msseg.preprocess.intensity`), all computed inside the brain mask (``--mask``, by
default the non-zero voxels; voxels outside keep their value, so a zero background stays zero):

* ``quantile``: the image's 0..100th percentiles mapped piecewise-linearly onto a template
  quantile function — the mean quantile function of a model's training images, stored in the
  model's ``plan.json`` (``--model``), or a JSON list of 101 values (``--template``); by default
  the template of brain FLAIR that msseg ships (``msseg/preprocess/
  brain_flair_quantile_template.json``: the training images of the first bundled
  ``brain_lesion_flair``, 3D-MR-MS patient 07);
* ``nyul``: Nyúl & Udupa standardisation onto a model's learnt landmarks (``--model``);
* ``zscore``: (x − mean) / std; ``minmax``: linear onto [0, 1].

The output has the input's grid and header, float32.
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("normalize", help="intensity normalisation (quantile, Nyúl, ...)",
                       description=DESCRIPTION)
    p.add_argument("-i", "--input", type=Path, required=True)
    p.add_argument("-o", "--output", type=Path, required=True)
    p.add_argument("--method", choices=METHODS, default="quantile")
    p.add_argument("--mask", type=Path, help="brain mask (default: non-zero voxels)")
    p.add_argument("--model", help="task or model folder whose learnt template/landmarks to use")
    p.add_argument("--template", type=Path, help="quantile: JSON list of 101 target values")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    check_outputs([args.output], args.overwrite, inputs=[p for p in (args.input, args.mask) if p],
                  suffixes=io.NIFTI_SUFFIXES)
    image = io.load(args.input)
    mask = None
    if args.mask is not None:
        mask_img = io.load(args.mask)
        if mask_img.shape != image.shape or not np.allclose(mask_img.affine, image.affine,
                                                           atol=1e-4):
            raise MssegError(f"{args.mask}: mask grid differs from {args.input}")
        mask = mask_img.data > 0
    if not intensity.foreground(image.data, mask).any():
        raise MssegError(f"{args.input}: no voxel inside the mask / non-zero")
    out = normalize_array(image.data, args.method, mask, args.model, args.template)
    io.save_like(out.astype(np.float32), image, args.output, dtype=np.float32)
    print(f"{args.input.name} -> {args.output} ({args.method})")
    return 0


def normalize_array(data: np.ndarray, method: str, mask, model: str | None,
                    template: Path | None) -> np.ndarray:
    if method == "zscore":
        return intensity.zscore_masked(data, mask)
    if method == "minmax":
        return intensity.minmax(data, mask)
    if method == "quantile" and (template is not None or model is None):
        return intensity.apply_quantile(data, read_template(template or DEFAULT_TEMPLATE), mask)
    from msseg.models.registry import find_model

    plan = find_model(model or DEFAULT_MODEL[method]).plan
    if plan.normalization != method:
        raise MssegError(f"model {model or DEFAULT_MODEL[method]!r} was trained with "
                         f"{plan.normalization} normalisation, not {method}")
    if method == "quantile":
        return intensity.apply_quantile(data, plan.intensity["template"], mask)
    return intensity.apply_nyul(data, plan.intensity["landmarks"], mask)


def read_template(template: Path) -> list[float]:
    """A quantile template: a JSON list of 101 values, or an object whose ``values`` is one."""
    try:
        values = json.loads(template.read_text())
    except (OSError, ValueError) as exc:
        raise MssegError(f"{template}: not a JSON list ({exc})") from exc
    if isinstance(values, dict):
        values = values.get("values")
    if not isinstance(values, list) or len(values) != len(intensity.QUANTILE_PERCENTILES):
        raise MssegError(f"{template}: need {len(intensity.QUANTILE_PERCENTILES)} values")
    return values
