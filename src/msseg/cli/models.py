"""``msseg models``: the models msseg can run, and importing your own.

``msseg models import PATH --name NAME`` copies an msseg model folder or an nnU-Net v2 results
folder (``…/nnUNetTrainer__nnUNetPlans__2d`` with ``plans.json``, ``dataset.json`` and
``fold_K/checkpoint_final.pth``; or a folder holding exactly one such folder, as SCT keeps its
downloaded models) into the user's model store, with a generated model card that states its
source, so that ``msseg segment NAME …`` runs it. ``msseg models list`` lists bundled and
imported models and where the store is.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list models; import nnU-Net or msseg model folders",
                       description=__doc__)
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    imp = verbs.add_parser("import", help="copy a model folder into the user's model store")
    imp.add_argument("path", type=Path, help="nnU-Net results folder or msseg model folder")
    imp.add_argument("--name", required=True, help="the task name to use with msseg segment")
    imp.add_argument("--overwrite", action="store_true", help="replace a model of that name")
    imp.set_defaults(run=run_import)
    lst = verbs.add_parser("list", help="bundled and imported models")
    lst.set_defaults(run=run_list)


def run_import(args: argparse.Namespace) -> int:
    from msseg.models.registry import import_model

    model = import_model(args.path, args.name, args.overwrite)
    print(f"imported {args.path} as {args.name!r} -> {model.path}")
    print(f"run it with: msseg segment {args.name} -i IMAGE -o OUTDIR")
    return 0


def run_list(args: argparse.Namespace) -> int:
    from msseg.models.registry import bundled_models, imported_models, model_name, user_store

    for kind, models in (("bundled", bundled_models()), ("imported", imported_models())):
        for model in models:
            kind_note = "nnU-Net" if model.task == "nnunet" else model.task
            print(f"{model_name(model):28s} {kind:9s} {kind_note:20s} {model.path}")
    print(f"user model store: {user_store()}")
    return 0
