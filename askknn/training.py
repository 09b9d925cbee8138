"""One adversarial-training loop for AT, ASK-Def and AT+SNN (they differ by one loss term).

loss = CE(f(PGD(x)), y) + extra_term(...). Every epoch draws its randomness from
seed + epoch, and a checkpoint (model, optimizer, history; askknn.checkpoints) is written atomically
after each epoch, so an interrupted run resumed from its checkpoint ends with the same weights.

The model and its input batches are channels_last on every device (askknn.models). On CUDA, without
changing what the CPU computes: the uint8 images live on the device and are converted and augmented
there, cuDNN runs with cudnn.benchmark and (train.precision: bf16) under bf16 autocast, the losses
in float32 (askknn.losses); statistics are read once per epoch. The epoch's permutation comes from
the CPU generator (the same batches on every device and rank); random starts and augmentations are
drawn on the device. train.cuda_graphs replays each step as one CUDA graph (askknn.cuda_graphs).

Under torchrun (askknn.distributed) every pass whose gradient trains the model, the loss terms'
included, goes through the DistributedDataParallel wrapper's forward (the only path that
synchronises gradients); attacks use the bare module. train.batch_size is one process's batch: with
W processes the global batch is W x batch_size and the learning rate W x lr (linear scaling, Goyal
et al. 2017). Each rank takes its slice of every global batch, BatchNorm is synchronised on CUDA,
losses and held-out metrics are summed over the ranks, and rank 0 alone reads and writes the
checkpoint, which records the world size and the global batch.
"""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from tqdm import tqdm

from askknn.attacks.pgd import PGD
from askknn.checkpoints import load_checkpoint, save_checkpoint
from askknn.cuda_graphs import graphed_or_eager
from askknn.data import PreparedData, to_float
from askknn.distributed import all_sum, broadcast_buffers, is_main, rank_and_world


@dataclass
class TrainConfig:
    epochs: int
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 2e-4
    milestones: list = field(default_factory=list)
    gamma: float = 0.1
    eps: int = 4                   # AT budget, in 1/255
    pgd_steps: int = 10
    pgd_step_size: float = 2.0     # in 1/255
    val_pgd_steps: int = 10
    augment: str = "none"          # none | crop_flip
    attack_mode: str = "eval"      # the model's mode while crafting: eval | train
    seed: int = 0
    precision: str = "fp32"        # fp32 | bf16 (autocast of the network; see effective_precision)
    wide_attack: dict | None = None   # at_wide: {eps, steps, step_size} of the training attack only
    schedule: str = "step"         # step: milestones and gamma per epoch | onecycle: per batch (see lr_at)
    cuda_graphs: bool = False      # replay each training step as one CUDA graph (askknn.cuda_graphs)

    @classmethod
    def from_params(cls, section: dict) -> "TrainConfig":
        return cls(**{k: v for k, v in section.items() if k in cls.__dataclass_fields__})

    def pgd(self) -> PGD:
        return PGD(self.eps / 255, steps=self.pgd_steps, step_size=self.pgd_step_size / 255,
                   train_mode=self.attack_mode == "train")

    def held_out_pgd(self) -> PGD:
        """The held-out check after each epoch: PGD at the AT budget, step eps/4 as every evaluation's,
        on the model in eval mode whatever `attack_mode` (in train mode its BatchNorm statistics would
        take in the held-out images)."""
        return PGD(self.eps / 255, steps=self.val_pgd_steps, step_size=self.eps / 4 / 255)

    def training_pgd(self) -> PGD:
        """The training attack: PGD at the AT budget or at_wide's wider one (held-out metrics: the AT budget)."""
        if self.wide_attack is None:
            return self.pgd()
        w = self.wide_attack
        return PGD(w["eps"] / 255, steps=w["steps"], step_size=w["step_size"] / 255,
                   train_mode=self.attack_mode == "train")

    def global_batch(self, world: int) -> int:
        """Images per optimizer step: batch_size on each of `world` processes."""
        return self.batch_size * world

    def peak_lr(self, world: int = 1) -> float:
        """lr scaled linearly with the world size (the global batch grows with it)."""
        return self.lr * world

    def lr_at(self, epoch: int, world: int = 1, progress: float = 0.0) -> float:
        """The learning rate `progress` (0 to 1) of the way through `epoch`, scaled with the world
        size. onecycle is the cyclic schedule of fast AT (Wong, Rice & Kolter 2020): linear from 0 up
        to the peak at 40% of training, then linear down to 0 at the end."""
        if self.schedule == "onecycle":
            t = (epoch + progress) / self.epochs
            return self.peak_lr(world) * (t / 0.4 if t < 0.4 else (1 - t) / 0.6)
        return self.peak_lr(world) * self.gamma ** sum(epoch >= m for m in self.milestones)


def effective_precision(precision: str, device) -> str:
    """train.precision as a run uses it: bf16 only on CUDA, where it pays; CPU runs stay fp32 and so
    bit-identical to runs made before the setting existed (tests ask for bf16 on CPU directly)."""
    return precision if torch.device(device).type == "cuda" else "fp32"


def autocast(cfg: TrainConfig, device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16",
                          cache_enabled=not cfg.cuda_graphs)   # graph capture wants autocast's cache off


# An extra loss term: (model, x, y, x_adv, features of x_adv at term.layers, net) -> scalar, where `net`
# is the entry point of passes that train the model (the DDP wrapper, or the model itself).
ExtraTerm = Callable[..., torch.Tensor]


def crop_flip(x: torch.Tensor, pad: int = 4) -> torch.Tensor:
    """Random crop (zero padding) and horizontal flip, per image, vectorised on x's device. The draws
    come from the global generator of x's device (no host copy per batch); no boolean indexing, which
    would synchronise with the GPU."""
    b, c, h, w = x.shape
    dy, dx = torch.randint(0, 2 * pad + 1, (2, b), device=x.device)
    flip = torch.rand(b, device=x.device) < 0.5
    arange = functools.partial(torch.arange, device=x.device)
    rows = (dy[:, None] + arange(h))[:, None, :, None]
    cols = (dx[:, None] + arange(w))[:, None, None, :]
    out = F.pad(x, (pad, pad, pad, pad))[arange(b)[:, None, None, None], arange(c)[None, :, None, None], rows, cols]
    return torch.where(flip[:, None, None, None], out.flip(-1), out)


@torch.no_grad()
def evaluate(model, x_u8: torch.Tensor, y: torch.Tensor, attack=None, batch_size: int = 500,
             device="cpu") -> dict[str, float]:
    """Mean CE loss and accuracy of the DNN on uint8 images and, with `attack`, its robust accuracy
    (correct clean and under attack). Sums stay on the device (float64, the precision of the Python
    floats they replace), read once; under torchrun each rank takes every world-th image."""
    rank, world = rank_and_world()
    n, x_u8, y = len(y), x_u8[rank::world], y[rank::world]
    model.eval()
    loss = torch.zeros((), dtype=torch.float64, device=device)
    correct, robust = (torch.zeros((), dtype=torch.int64, device=device) for _ in range(2))
    for start in range(0, len(y), batch_size):
        x = to_float(x_u8[start:start + batch_size].to(device, non_blocking=True))
        t = y[start:start + batch_size].to(device, non_blocking=True)
        logits = model(x)
        loss += F.cross_entropy(logits, t, reduction="sum").double()
        right = logits.argmax(1) == t
        correct += right.sum()
        if attack is not None:
            with torch.enable_grad():
                x_adv = attack(model, x, t)
            robust += ((model(x_adv).argmax(1) == t) & right).sum()
    all_sum(loss, correct, robust)
    scores = {"loss": loss.item() / n, "accuracy": correct.item() / n}
    return scores if attack is None else {**scores, "robust_accuracy": robust.item() / n}


@dataclass
class TrainLoop:
    """What every training step of one run uses; `net` is the entry point of the passes that train the
    model (the DDP wrapper under torchrun, else the model itself)."""
    model: torch.nn.Module
    net: torch.nn.Module
    optimizer: torch.optim.Optimizer
    cfg: TrainConfig
    device: torch.device
    rank: int
    world: int
    attack: PGD
    extra_term: ExtraTerm | None
    layers: list


def place_model(model, device) -> torch.device:
    """`model` moved to `device`, keeping its channels_last layout (askknn.models); cudnn.benchmark on CUDA."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True   # fixed shapes: let cuDNN time and keep its fastest kernels
    model.to(device)
    return device


def training_net(model, device: torch.device, world: int):
    """The entry point of training passes: under torchrun the DDP wrapper (SyncBatchNorm on CUDA)."""
    net = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel
        if device.type == "cuda":
            torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)   # replaces the BatchNorm layers in place
        net = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    return net


def set_lr(optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def epoch_order(n: int, world: int) -> torch.Tensor:
    """The epoch's permutation of the n training images (CPU generator: the same on every device and
    rank), cut to a multiple of the world size. The last global batch then splits into equal, non-empty
    slices: a rank without images would make its loss NaN (cross-entropy of nothing), and unequal slices
    would weigh images unequally in DDP's average of the ranks' gradients. At most world - 1 images
    are left out of an epoch, different ones every epoch; a single process keeps them all."""
    order = torch.randperm(n)
    return order[:n - n % world]


def train_step(loop: TrainLoop, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """One optimizer step on the float batch (x, y): augmentation, the training attack, CE plus the extra
    term; returns the batch's summed loss (float64 on the device)."""
    cfg, model = loop.cfg, loop.model
    if cfg.augment == "crop_flip":
        x = crop_flip(x)
    x = x.contiguous(memory_format=torch.channels_last)
    with autocast(cfg, loop.device):
        x_adv = loop.attack(model, x, y)
        model.train()
        logits, feats = loop.net(x_adv, loop.layers)
        loss = F.cross_entropy(logits.float(), y)
        if loop.extra_term is not None:
            loss = loss + loop.extra_term(model, x, y, x_adv, feats, loop.net)
    loop.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    loop.optimizer.step()
    return loss.detach().double() * len(y)   # float64 on the device: what Python floats summed


def train_epoch(loop: TrainLoop, x_train: torch.Tensor, y_train: torch.Tensor, epoch: int,
                step: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> tuple[torch.Tensor, int, float]:
    """One epoch of training with `step` (train_step's signature less the loop), its randomness drawn
    from seed + epoch (and the rank, under torchrun): (this rank's summed loss, the images of the
    epoch, its seconds)."""
    cfg, world, device = loop.cfg, loop.world, loop.device
    global_batch = cfg.global_batch(world)
    torch.manual_seed(cfg.seed * 100_003 + epoch)
    set_lr(loop.optimizer, cfg.lr_at(epoch, world))
    order = epoch_order(len(y_train), world)
    if world > 1:   # then independent random starts and crops on every rank
        torch.manual_seed((cfg.seed * 100_003 + epoch) * 1_009 + loop.rank + 1)
    tic, total = time.perf_counter(), torch.zeros((), dtype=torch.float64, device=device)
    for start_idx in tqdm(range(0, len(order), global_batch), desc=f"epoch {epoch + 1}/{cfg.epochs}",
                          leave=False, disable=None if is_main() else True):  # no bar off a terminal
        if cfg.schedule == "onecycle":
            set_lr(loop.optimizer, cfg.lr_at(epoch, world, start_idx / len(order)))
        idx = order[start_idx:start_idx + global_batch].tensor_split(world)[loop.rank]   # this rank's slice
        idx = idx.to(device, non_blocking=True)
        total += step(to_float(x_train[idx]), y_train[idx])
    if device.type == "cuda":
        torch.cuda.synchronize()   # the epoch's time includes its queued kernels
    return total, len(order), time.perf_counter() - tic


def epoch_record(loop: TrainLoop, epoch: int, total: torch.Tensor, n: int, epoch_time: float, x_val, y_val,
                 val_attack: PGD) -> dict:
    """The epoch's history entry: the training loss summed over the ranks, held-out clean and PGD metrics."""
    all_sum(total)
    broadcast_buffers(loop.model)
    held_out = evaluate(loop.model, x_val, y_val, val_attack, device=loop.device)
    cfg, world = loop.cfg, loop.world
    return {"epoch": epoch + 1, "lr": cfg.lr_at(epoch, world), "global_batch": cfg.global_batch(world),
            "train_loss": total.item() / n,
            "val_loss": held_out["loss"], "val_clean_accuracy": held_out["accuracy"],
            "val_pgd_accuracy": held_out["robust_accuracy"], "epoch_seconds": epoch_time}


def train_model(model, data: PreparedData, cfg: TrainConfig, checkpoint: Path, extra_term: ExtraTerm | None = None,
                device="cpu", log: Callable[[str], None] = print) -> list[dict]:
    """Train `model` in place, resuming from `checkpoint` if it exists; returns per-epoch history."""
    device = place_model(model, device)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                nesterov=cfg.nesterov, weight_decay=cfg.weight_decay)
    rank, world = rank_and_world()
    global_batch = cfg.global_batch(world)
    start, history = load_checkpoint(checkpoint, model, optimizer, world, global_batch)
    if world > 1 and is_main():
        log(f"global batch {global_batch} = {world} x {cfg.batch_size}, lr {cfg.peak_lr(world):g} = "
            f"{world} x {cfg.lr:g} (linear scaling)")
    if start and is_main():
        log(f"resuming from {checkpoint} after epoch {start}")
    net = training_net(model, device, world)
    x_train, y_train = (t.to(device) for t in data.split("train"))   # uint8: resident on the device
    x_val, y_val = data.split("val")
    attack, val_attack = cfg.training_pgd(), cfg.held_out_pgd()
    loop = TrainLoop(model, net, optimizer, cfg, device, rank, world, attack, extra_term,
                     getattr(extra_term, "layers", []))
    step = graphed_or_eager(functools.partial(train_step, loop), lambda: optimizer.param_groups[0]["lr"],
                            cfg.cuda_graphs, device, world, log if is_main() else lambda _: None)
    for epoch in range(start, cfg.epochs):
        total, n, epoch_time = train_epoch(loop, x_train, y_train, epoch, step)
        history.append(epoch_record(loop, epoch, total, n, epoch_time, x_val, y_val, val_attack))
        if is_main():
            log(" ".join(f"{k}={v:.4g}" for k, v in history[-1].items()))
            save_checkpoint(checkpoint, model, optimizer, epoch + 1, history, world, global_batch)
    return history
