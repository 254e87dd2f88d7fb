"""``msseg train``: train a segmentation model from a YAML config and/or flags.

Flags override the config file; the resolved config is saved in the run folder and inside
every checkpoint. Multi-GPU / multi-process: ``torchrun --nproc_per_node N -m msseg.cli.main
train CONFIG.yaml`` (gloo on CPU, NCCL on GPUs).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model", description=__doc__)
    p.add_argument("config", nargs="?", type=Path, help="YAML config (fields of TrainConfig)")
    p.add_argument("--dataset", help="dataset index from `msseg dataset scan`")
    p.add_argument("-o", "--output", help="run folder")
    p.add_argument("--dims", type=int, choices=(2, 3))
    p.add_argument("--epochs", type=int)
    p.add_argument("--iterations-per-epoch", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--optimizer", choices=("sgd", "adam"))
    p.add_argument("--learning-rate", type=float)
    p.add_argument("--sampling", choices=("uniform", "contrast-sqrt"))
    p.add_argument("--fold", type=int)
    p.add_argument("--patch-size", type=lambda t: tuple(int(x) for x in t.split(",")))
    p.add_argument("--init-from", help="checkpoint whose compatible weights initialise the model")
    p.add_argument("--seed", type=int)
    p.add_argument("--architecture", choices=("dynunet", "dilated_unet", "unet", "unetpp",
                                                       "unetpp_resnet", "unet_resnet"))
    p.add_argument("--base-filters", type=int,
                   help="channels of the first level (doubling per level up to --max-filters)")
    p.add_argument("--max-filters", type=int)
    p.add_argument("--normalization", choices=("zscore", "minmax", "nyul", "quantile"))
    p.add_argument("--label-consensus", choices=("none", "union", "majority", "staple"),
                   help="train on the consensus of the records' rater masks")
    p.add_argument("--threads", type=int, dest="num_threads",
                   help="CPU threads of PyTorch (0: all cores)")
    p.add_argument("--resume", action="store_true", help="continue from checkpoint_last.pt")
    p.add_argument("--max-epochs", type=int,
                   help="stop after this many epochs in this call (resume later)")
    p.set_defaults(run=run)


OVERRIDES = ("dataset", "output", "dims", "epochs", "iterations_per_epoch", "batch_size",
             "optimizer", "learning_rate", "sampling", "fold", "patch_size", "init_from", "seed",
             "architecture", "base_filters", "max_filters", "normalization", "label_consensus",
             "num_threads")


def config_from_args(args: argparse.Namespace):
    from msseg.training.config import TrainConfig

    base = TrainConfig.from_yaml(args.config) if args.config else TrainConfig()
    changes = {k: getattr(args, k) for k in OVERRIDES if getattr(args, k) is not None}
    config = base.replace(**changes)
    config.validate()
    return config


def run(args: argparse.Namespace) -> int:
    from msseg.training.loop import train

    out = train(config_from_args(args), resume=args.resume, max_epochs=args.max_epochs)
    print(f"run folder: {out}")
    return 0
