"""The training loop: region-based Dice + BCE, SGD/poly or Adam, validation Dice per epoch,
best/last checkpoints, exact resume, log.csv and a curve PNG, DDP through torchrun."""

from __future__ import annotations

import csv
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from monai.losses import DiceLoss
from rich.console import Console
from rich.progress import track

from msseg import io
from msseg.data.index import Record, load_index
from msseg.errors import MssegError
from msseg.evaluation.voxel import dice
from msseg.models.backends import TorchNetwork
from msseg.models.networks import build_network
from msseg.models.windows import predict_regions
from msseg.preprocess.orient import to_rpi
from msseg.training.augment import augment_batch, build_augmentation
from msseg.training.config import TrainConfig
from msseg.training.data import (
    REGION_CHANNEL,
    Case,
    PatchSampler,
    case_weights,
    crop_to_cord,
    learn_intensity,
    load_case,
)
from msseg.training.planning import Plan, plan

LOG_FIELDS = ("epoch", "train_loss", "val_dice_cord", "val_dice_lesion", "val_score",
              "learning_rate", "seconds", "world_size")
console = Console(stderr=True)


@dataclass
class Distributed:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed() -> Distributed:
    """Join the process group when started by torchrun (WORLD_SIZE > 1): gloo on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return Distributed(dist.get_rank(), dist.get_world_size())


class RegionLoss(torch.nn.Module):
    """Loss on sigmoid outputs, per region channel.

    ``dice_bce`` (nnU-Net's region loss): MONAI's batch Dice with sigmoid plus PyTorch's BCE
    with logits, weights 1:1. ``dice``: the Dice term alone (Gros et al. 2019). ``wbce``:
    class-weighted BCE, ``−mean(w·y·log p + (1 − w)·(1 − y)·log(1 − p))`` with
    ``w = pos_weight`` (Badea & Popa: 0.8 for lesion voxels, 0.2 for the rest)."""

    def __init__(self, kind: str = "dice_bce", pos_weight: float = 0.8):
        super().__init__()
        self.kind, self.pos_weight = kind, float(pos_weight)
        self.dice = DiceLoss(sigmoid=True, batch=True, smooth_nr=1e-5, smooth_dr=1e-5)
        self.bce = torch.nn.BCEWithLogitsLoss()

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.kind == "dice":
            return self.dice(logits, target)
        if self.kind == "wbce":
            weight = target * self.pos_weight + (1 - target) * (1 - self.pos_weight)
            return torch.nn.functional.binary_cross_entropy_with_logits(logits, target,
                                                                        weight=weight)
        return self.dice(logits, target) + self.bce(logits, target)


def split_records(records: list[Record], config: TrainConfig) -> tuple[list, list]:
    labelled = [r for r in records if r.cord is not None]
    if not labelled:
        raise MssegError(f"{config.dataset}: no image with a cord mask")
    if config.fold is not None and any(r.fold is not None for r in labelled):
        val = [r for r in labelled if r.fold == config.fold]
        train = [r for r in labelled if r.fold != config.fold]
    else:
        patients = sorted({r.patient for r in labelled})
        rng = np.random.default_rng(config.seed)
        n_val = max(1, int(round(config.val_split * len(patients)))) if len(patients) > 1 else 0
        held = set(rng.permutation(patients)[:n_val])
        val = [r for r in labelled if r.patient in held]
        train = [r for r in labelled if r.patient not in held]
    if not train:
        raise MssegError("no training images left after the validation split")
    return train, val


def rpi_geometry(record: Record) -> tuple[tuple[float, ...], tuple[int, ...]]:
    """Spacing and shape of a record once reoriented to RPI (axis 2 = S-I)."""
    axes = {"L": 0, "R": 0, "A": 1, "P": 1, "S": 2, "I": 2}
    order = [0, 0, 0]
    for i, code in enumerate(record.orientation):
        order[axes[code]] = i
    return tuple(record.spacing[i] for i in order), tuple(record.shape[i] for i in order)


#: Resolution levels of the fixed-depth architectures (filters double per level).
LEVELS = {"dilated_unet": 3, "unet": 3, "unetpp": 5, "unetpp_resnet": 5,
          "unet_resnet": 5}


def make_plan(train: list[Record], config: TrainConfig) -> Plan:
    geometry = [rpi_geometry(r) for r in train]
    planned = plan([g[0] for g in geometry], [g[1] for g in geometry], config.dims,
                   config.patch_size, config.target_spacing, config.base_filters,
                   config.max_filters,
                   whole_context=bool(config.extra.get("whole_context", False)))
    levels = LEVELS.get(config.architecture)
    filters = (planned.filters if levels is None else
               tuple(min(config.base_filters * 2**i, config.max_filters) for i in range(levels)))
    return planned.replace(architecture=config.architecture, regions=tuple(config.regions),
                           dropout=config.dropout, normalization=config.normalization,
                           frame=config.frame, filters=filters)


def load_compatible(model: torch.nn.Module, checkpoint: str | Path) -> tuple[int, list[str]]:
    """Copy every tensor whose name and shape match; returns (loaded count, skipped names)."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["model"]
    own = model.state_dict()
    loaded = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    skipped = sorted(set(own) - set(loaded))
    own.update(loaded)
    model.load_state_dict(own)
    return len(loaded), skipped


def validate(model: torch.nn.Module, cases: list[Case], plan_: Plan, device) -> tuple:
    """Mean cord Dice over the validation cases and mean lesion Dice over those with lesions
    (the best checkpoint is chosen on their mean); NaN for a region the model does not
    output."""
    if not cases:
        return float("nan"), float("nan")
    scores = {"cord": [], "lesion": []}
    for case in cases:
        pred = predict_regions([TorchNetwork(model, str(device))], case.image, plan_.patch_size,
                               plan_.dims, len(plan_.regions)) > 0.5
        for out, region in enumerate(plan_.regions):
            ref = case.regions[REGION_CHANNEL[region]] > 0
            if region == "cord" or ref.any():  # lesion-free cases would score 1 for nothing
                scores[region].append(dice(pred[out], ref))
    return tuple(float(np.mean(v)) if v else float("nan") for v in scores.values())


class Trainer:
    def __init__(self, config: TrainConfig, resume: bool = False):
        config.validate()
        self.config, self.resume = config, resume
        self.dist = init_distributed()
        self.device = torch.device(f"cuda:{self.dist.rank % torch.cuda.device_count()}"
                                   if torch.cuda.is_available() else "cpu")
        if config.num_threads:
            torch.set_num_threads(config.num_threads)
        self.out = Path(config.output)
        records = load_index(config.dataset)
        train_records, val_records = split_records(records, config)
        self.plan = make_plan(train_records, config)
        if config.normalization in ("nyul", "quantile") and not self._resuming():
            self.plan = self.plan.replace(intensity=learn_intensity(
                [to_rpi(io.load(r.image)).data for r in train_records], config.normalization))
        elif self._resuming():  # the learnt intensity statistics are part of the checkpoint
            self.plan = Plan.from_dict(torch.load(self.out / "checkpoint_last.pt",
                                                  weights_only=False)["plan"])
        self.cases = [load_case(r, self.plan, config.label_consensus) for r in train_records]
        crop = crop_to_cord if self.plan.frame == "image" else (lambda case: case)
        self.val_cases = ([crop(load_case(r, self.plan, config.label_consensus))
                           for r in val_records[:config.val_max_cases]]
                          if self.dist.main else [])
        torch.manual_seed(config.seed)
        self.model = build_network(self.plan).to(self.device)
        self.optimizer, self.scheduler = self._optimizer()
        self.start_epoch, self.best = 0, -np.inf
        self._restore_or_init()
        self.net = self.model
        if self.dist.world > 1:
            self.net = torch.nn.parallel.DistributedDataParallel(self.model)
        self.loss = RegionLoss(config.loss, config.pos_weight).to(self.device)
        self.weights = case_weights([c.contrast for c in self.cases], config.sampling)

    def _resuming(self) -> bool:
        return self.resume and (self.out / "checkpoint_last.pt").exists()

    def _optimizer(self):
        c = self.config
        if c.optimizer == "sgd":
            opt = torch.optim.SGD(self.model.parameters(), lr=c.learning_rate, momentum=0.99,
                                  nesterov=True, weight_decay=c.weight_decay)
        else:
            opt = torch.optim.Adam(self.model.parameters(), lr=c.learning_rate,
                                   weight_decay=c.weight_decay)
        sched = torch.optim.lr_scheduler.PolynomialLR(opt, total_iters=c.epochs,
                                                      power=c.poly_exponent)
        return opt, sched

    def _restore_or_init(self) -> None:
        last = self.out / "checkpoint_last.pt"
        if self.resume and last.exists():
            state = torch.load(last, map_location=self.device, weights_only=False)
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.start_epoch, self.best = state["epoch"] + 1, state["best"]
            self._say(f"resumed from {last} at epoch {self.start_epoch}")
        elif self.config.init_from:
            n, skipped = load_compatible(self.model, self.config.init_from)
            self._say(f"init from {self.config.init_from}: loaded {n} tensors, "
                      f"not loaded {len(skipped)}" + (f" ({', '.join(skipped[:6])}…)"
                                                      if skipped else ""))

    def _lesion_channel(self) -> int | None:
        regions = self.plan.regions
        return regions.index("lesion") if "lesion" in regions else None

    def _say(self, text: str) -> None:
        if self.dist.main:
            console.print(text)

    def run(self, max_epochs: int | None = None) -> Path:
        """Train until ``config.epochs`` (or ``max_epochs`` more epochs in this call: the LR
        schedule still spans ``config.epochs``, so a budgeted run resumes seamlessly)."""
        c = self.config
        if self.dist.main:
            self.out.mkdir(parents=True, exist_ok=True)
            c.to_yaml(self.out / "config.yaml")
            (self.out / "plan.json").write_text(json.dumps(self.plan.to_dict(), indent=1))
            self._say(f"training {len(self.cases)} cases, validating {len(self.val_cases)}; "
                      f"plan {self.plan.patch_size} @ {self.plan.target_spacing} mm, "
                      f"world size {self.dist.world}")
        per_rank_batch = max(1, c.batch_size // self.dist.world)
        stop = c.epochs if max_epochs is None else min(c.epochs, self.start_epoch + max_epochs)
        for epoch in range(self.start_epoch, stop):
            start = time.perf_counter()
            loss = self._epoch(epoch, per_rank_batch)
            lr = self.optimizer.param_groups[0]["lr"]
            self.scheduler.step()
            if self.dist.main:
                cord, lesion = validate(self.model, self.val_cases, self.plan, self.device)
                score = np.nanmean([cord, lesion]) if self.val_cases else -loss
                self._log(epoch, loss, cord, lesion, score, lr, time.perf_counter() - start)
                self._checkpoint(epoch, score)
            if self.dist.world > 1:
                dist.barrier()
        self._check_replicas()
        return self.out

    def _epoch(self, epoch: int, batch: int) -> float:
        c = self.config
        seed = [c.seed, self.dist.rank, epoch]  # reseeded per epoch: resume is exact
        torch.manual_seed(int(np.random.default_rng(seed).integers(2**31)))
        sampler = PatchSampler(self.cases, self.plan, self.weights, c.foreground_fraction,
                               c.jitter_fraction, np.random.default_rng(seed).integers(2**31),
                               c.lesion_share, c.lesion_sampling)
        augmentation = build_augmentation(self.plan.dims, seed=int(sum(seed) * 7919 % 2**31),
                                          profile=c.augmentation,
                                          lesion_channel=self._lesion_channel())
        self.net.train()
        losses = []
        steps = range(c.iterations_per_epoch)
        if self.dist.main:
            steps = track(steps, description=f"epoch {epoch + 1}/{c.epochs}", console=console,
                          transient=True)
        for _ in steps:
            images, targets = sampler.batch(batch)
            if c.augment and c.augmentation != "none":
                images, targets = augment_batch(augmentation, images, targets)
            x = torch.from_numpy(images).to(self.device)
            y = torch.from_numpy(targets.astype(np.float32)).to(self.device)
            loss = self.loss(self.net(x), y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), 12.0)
            self.optimizer.step()
            losses.append(loss.item())
        return float(np.mean(losses))

    def _log(self, epoch, loss, cord, lesion, score, lr, seconds) -> None:
        path = self.out / "log.csv"
        new = not path.exists() or epoch == 0
        with path.open("w" if new else "a", newline="") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(LOG_FIELDS)
            writer.writerow([epoch, loss, cord, lesion, score, lr, round(seconds, 2),
                             self.dist.world])
        self._say(f"epoch {epoch + 1}: loss {loss:.4f}  val Dice cord {cord:.3f} "
                  f"lesion {lesion:.3f}  ({seconds:.0f} s)")
        plot_curves(path, self.out / "curves.png")

    def _checkpoint(self, epoch: int, score: float) -> None:
        state = {"config": self.config.to_dict(), "plan": self.plan.to_dict(),
                 "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "epoch": epoch,
                 "best": max(self.best, score)}
        _atomic_save(state, self.out / "checkpoint_last.pt")
        if score > self.best:
            self.best = score
            _atomic_save(state, self.out / "checkpoint_best.pt")

    def _check_replicas(self) -> None:
        """With DDP, record each rank's parameter checksum (they must be identical)."""
        if self.dist.world <= 1:
            return
        total = float(sum(p.detach().double().sum() for p in self.model.parameters()))
        sums = [None] * self.dist.world
        dist.all_gather_object(sums, total)
        if self.dist.main:
            (self.out / "distributed.json").write_text(json.dumps({"param_sums": sums}))
        dist.barrier()


def _atomic_save(state: dict, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def plot_curves(log_csv: Path, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    log = pd.read_csv(log_csv)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(log.epoch + 1, log.train_loss, label="train loss (Dice + BCE)", color="C0")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax2 = ax.twinx()
    ax2.plot(log.epoch + 1, log.val_dice_cord, label="val Dice cord", color="C2")
    ax2.plot(log.epoch + 1, log.val_dice_lesion, label="val Dice lesion", color="C3")
    ax2.set_ylim(0, 1)
    ax2.set_ylabel("Dice")
    fig.legend(loc="upper center", ncol=3, fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    fig.savefig(png, dpi=100)
    plt.close(fig)


def train(config: TrainConfig, resume: bool = False, max_epochs: int | None = None) -> Path:
    trainer = Trainer(config, resume)
    try:
        return trainer.run(max_epochs)
    finally:
        if trainer.dist.world > 1 and dist.is_initialized():
            dist.destroy_process_group()
