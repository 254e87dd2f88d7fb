"""``msseg models``: the models msseg can run, and importing your own.
"""

from __future__ import annotations

import argparse
from pathlib import Path

DESCRIPTION = """\
``msseg models``: the models msseg can run, and importing your own.

``msseg models import PATH [--name NAME]`` copies an msseg model folder, an nnU-Net v2 results
folder (``…/nnUNetTrainer__nnUNetPlans__2d`` with ``plans.json``, ``dataset.json`` and
``fold_K/checkpoint_final.pth``; or a folder holding exactly one such folder, as SCT keeps its
downloaded models) or one of SCT's released Keras models (``t2_ax_lesion.h5``, ``t2s_ctr.h5``…,
or SCT's ``.onnx`` conversions; exported to ONNX once, here) into the user's model store, with
a generated model card that states its source, so that ``msseg segment NAME …`` runs it.
``msseg models import-sct SCT_DATA_DIR`` imports every model of SCT's data folder
(``$SCT_DIR/data`` with ``deepseg_sc_models/`` and ``deepseg_lesion_models/``) as
``sct_lesion_<contrast>`` and ``sct_centerline_<contrast>``. ``msseg models list`` lists
bundled and imported models and where the store is.
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list models; import nnU-Net, SCT or msseg models",
                       description=DESCRIPTION)
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    imp = verbs.add_parser("import", help="copy a model folder or SCT model file into the "
                           "user's model store")
    imp.add_argument("path", type=Path, help="nnU-Net results folder, msseg model folder, or "
                     "SCT model file (<contrast>_lesion.h5, <contrast>_ctr.h5, .onnx)")
    imp.add_argument("--name", help="the task name to use with msseg segment (default: "
                     "sct_<kind>_<contrast> for SCT files, else the folder's name)")
    imp.add_argument("--overwrite", action="store_true", help="replace a model of that name")
    imp.set_defaults(run=run_import)
    sct = verbs.add_parser("import-sct", help="import SCT's released two-stage models from "
                           "its data folder")
    sct.add_argument("path", type=Path, help="SCT's data folder ($SCT_DIR/data) or a folder of "
                     "SCT model files")
    sct.add_argument("--overwrite", action="store_true", help="replace models of those names")
    sct.set_defaults(run=run_import_sct)
    lst = verbs.add_parser("list", help="bundled and imported models")
    lst.set_defaults(run=run_list)


def run_import(args: argparse.Namespace) -> int:
    from msseg.models.registry import import_model, model_name

    model = import_model(args.path, args.name, args.overwrite)
    name = model_name(model)
    print(f"imported {args.path} as {name!r} -> {model.path}")
    print(f"run it with: msseg segment {name} -i IMAGE -o OUTDIR")
    return 0


def run_import_sct(args: argparse.Namespace) -> int:
    from msseg.models.registry import import_sct, model_name

    for model in import_sct(args.path, args.overwrite):
        print(f"imported SCT {model.kind} model ({model.contrast}) as {model_name(model)!r} -> "
              f"{model.path}")
    print("run them with: msseg segment sct_lesion_t2_ax -i IMAGE -o OUTDIR (see msseg segment "
          "--list)")
    return 0


def run_list(args: argparse.Namespace) -> int:
    from msseg.models.registry import bundled_models, imported_models, model_name, user_store

    for kind, models in (("bundled", bundled_models()), ("imported", imported_models())):
        for model in models:
            kind_note = "nnU-Net" if model.task == "nnunet" else model.task
            print(f"{model_name(model):28s} {kind:9s} {kind_note:20s} {model.path}")
    print(f"user model store: {user_store()}")
    return 0
