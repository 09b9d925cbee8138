"""One adversarial-training loop for AT, ASK-Def and AT+SNN (they differ by one loss term).

loss = CE(f(PGD(x)), y) + extra_term(...). Every epoch draws its randomness from
seed + epoch, and a checkpoint (model, optimizer, history) is written atomically after each
epoch, so an interrupted run resumed from its checkpoint ends with the same weights.

On CUDA the loop is made fast without changing what it computes on the CPU: the uint8 images live
on the device and are converted and augmented there, the model runs channels_last with
cudnn.benchmark and (train.precision: bf16) under bf16 autocast, while the losses stay in float32
(askknn.losses); statistics accumulate on the device and are read once per epoch (no host
synchronisation per batch). The epoch's permutation comes from the CPU generator (the same batches
on every device and rank); random starts and augmentations are drawn on the device.

Under torchrun (askknn.distributed) the model is wrapped in DistributedDataParallel and every pass
whose gradient trains it, the loss terms' included, goes through the wrapper's forward (the only
path that synchronises gradients); attacks use the bare module, as they only need input gradients.
train.batch_size is the batch of one process: with W processes the global batch is W x batch_size
and the learning rate W x lr (linear scaling, Goyal et al. 2017), which rank 0 states at the start.
Each rank takes its slice of every global batch of the same epoch permutation, BatchNorm is
synchronised on CUDA (SyncBatchNorm), losses and held-out metrics are summed over the ranks, and rank
0 alone reads and writes the checkpoint, which records the world size and the global batch. A single
process skips all of it and computes what it always did.
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
from askknn.data import PreparedData, to_float
from askknn.distributed import all_sum, broadcast_buffers, broadcast_object, is_main, rank_and_world
from askknn.io import load_torch, save_torch


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

    @classmethod
    def from_params(cls, section: dict) -> "TrainConfig":
        return cls(**{k: v for k, v in section.items() if k in cls.__dataclass_fields__})

    def pgd(self, steps: int | None = None) -> PGD:
        return PGD(self.eps / 255, steps=self.pgd_steps if steps is None else steps,
                   step_size=self.pgd_step_size / 255, train_mode=self.attack_mode == "train")

    def training_pgd(self) -> PGD:
        """The attack the model trains on: PGD at the AT budget, or at_wide's wider one. Held-out
        metrics always use the AT budget, so every method's curves are comparable."""
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
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16")


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
    """Mean CE loss and accuracy of the DNN on uint8 images, optionally under `attack`. Sums stay on
    the device (float64, the precision of the Python floats they replace) and are read once. Under
    torchrun each rank evaluates every world-th image and the sums are added over the ranks."""
    rank, world = rank_and_world()
    n, x_u8, y = len(y), x_u8[rank::world], y[rank::world]
    model.eval()
    loss = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    for start in range(0, len(y), batch_size):
        x = to_float(x_u8[start:start + batch_size].to(device, non_blocking=True))
        t = y[start:start + batch_size].to(device, non_blocking=True)
        if attack is not None:
            with torch.enable_grad():
                x = attack(model, x, t)
        logits = model(x)
        loss += F.cross_entropy(logits, t, reduction="sum").double()
        correct += (logits.argmax(1) == t).sum()
    all_sum(loss, correct)
    return {"loss": loss.item() / n, "accuracy": correct.item() / n}


class CheckpointMismatch(RuntimeError):
    """A checkpoint written by another number of processes or with another global batch."""


def read_checkpoint(path: Path):
    """What rank 0 finds at `path`: the checkpoint, None if there is none, or the exception reading it
    raised. Only rank 0 reads, as only rank 0 writes: on several machines only its node has the file."""
    if not is_main() or not path.exists():
        return None
    try:
        return load_torch(path)
    except Exception as exc:   # sent to every rank, which all start over alike
        return exc


def check_layout(path: Path, state: dict, world: int, global_batch: int) -> None:
    """Refuse a checkpoint written by another number of processes or with another global batch: the
    run would not continue as it began (other batches, learning rate and random streams)."""
    # A checkpoint from before these keys were saved is taken as one process's at train.batch_size
    # (which its name fixes), so it still resumes in one process.
    run = {"world size": world, "global batch": global_batch}
    saved = {"world size": state.get("world_size", 1), "global batch": state.get("global_batch", global_batch // world)}
    differ = [f"{k} {saved[k]} (this run: {run[k]})" for k in run if saved[k] != run[k]]
    if differ:
        raise CheckpointMismatch(f"checkpoint {path} was written with {', '.join(differ)}; resume with the "
                                 f"same number of processes (torchrun --nproc-per-node, train.nproc) and "
                                 f"train.batch_size, or delete the checkpoint to start over")


def load_checkpoint(path: Path, model, optimizer, world: int, global_batch: int) -> tuple[int, list]:
    """(epochs done, history) from `path`, or (0, []) to start over. Rank 0 reads the checkpoint and
    every rank loads rank 0's copy. One written by another number of processes (`world`) or with
    another `global_batch` raises CheckpointMismatch, on every rank alike. A checkpoint that cannot
    be read (truncated, refused by weights_only loading, or of another shape) never blocks training: it
    is renamed aside to `<name>.unreadable`, a warning names it, and the model and optimizer keep their
    fresh state, so the run is the same as one that never had a checkpoint."""
    import copy
    import os
    import warnings

    path = Path(path)
    state = broadcast_object(read_checkpoint(path))
    if state is None:
        return 0, []
    if isinstance(state, dict):
        check_layout(path, state, world, global_batch)
    fresh_model, fresh_optimizer = copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict())
    try:
        if isinstance(state, Exception):
            raise state
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        epoch, history = int(state["epoch"]), list(state["history"])
    except Exception as exc:   # UnreadableFile, missing keys, mismatched shapes: all mean "start over"
        model.load_state_dict(fresh_model)
        optimizer.load_state_dict(fresh_optimizer)
        aside = path.with_name(path.name + ".unreadable")
        if is_main():   # the one rank that writes checkpoints also sets them aside
            os.replace(path, aside)
        warnings.warn(f"checkpoint {path} cannot be resumed ({exc}); moved it to {aside} and training "
                      f"starts over from epoch 0", RuntimeWarning, stacklevel=2)
        return 0, []
    return epoch, history


def epoch_order(n: int, world: int) -> torch.Tensor:
    """The epoch's permutation of the n training images (CPU generator: the same on every device and
    rank), cut to a multiple of the world size. The last global batch then splits into equal, non-empty
    slices: a rank without images would make its loss NaN (cross-entropy of nothing), and unequal slices
    would weigh images unequally in DDP's average of the ranks' gradients. At most world - 1 images
    are left out of an epoch, different ones every epoch; a single process keeps them all."""
    order = torch.randperm(n)
    return order[:n - n % world]


def train_model(model, data: PreparedData, cfg: TrainConfig, checkpoint: Path, extra_term: ExtraTerm | None = None,
                device="cpu", log: Callable[[str], None] = print) -> list[dict]:
    """Train `model` in place, resuming from `checkpoint` if it exists; returns per-epoch history."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True   # fixed shapes: let cuDNN time and keep its fastest kernels
        model.to(device, memory_format=torch.channels_last)
    else:
        model.to(device)
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
    net = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel
        if device.type == "cuda":
            torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)   # replaces the BatchNorm layers in place
        net = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    x_train, y_train = (t.to(device) for t in data.split("train"))   # uint8: resident on the device
    x_val, y_val = data.split("val")
    attack, val_attack = cfg.training_pgd(), cfg.pgd(cfg.val_pgd_steps)
    layers = getattr(extra_term, "layers", [])
    for epoch in range(start, cfg.epochs):
        torch.manual_seed(cfg.seed * 100_003 + epoch)
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr_at(epoch, world)
        order = epoch_order(len(y_train), world)
        if world > 1:   # then independent random starts and crops on every rank
            torch.manual_seed((cfg.seed * 100_003 + epoch) * 1_009 + rank + 1)
        tic, total = time.perf_counter(), torch.zeros((), dtype=torch.float64, device=device)
        for start_idx in tqdm(range(0, len(order), global_batch), desc=f"epoch {epoch + 1}/{cfg.epochs}",
                              leave=False, disable=None if is_main() else True):  # no bar off a terminal
            if cfg.schedule == "onecycle":
                for group in optimizer.param_groups:
                    group["lr"] = cfg.lr_at(epoch, world, start_idx / len(order))
            idx = order[start_idx:start_idx + global_batch].tensor_split(world)[rank]   # this rank's slice
            idx = idx.to(device, non_blocking=True)
            x, y = to_float(x_train[idx]), y_train[idx]
            if cfg.augment == "crop_flip":
                x = crop_flip(x)
            if device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(cfg, device):
                x_adv = attack(model, x, y)
                model.train()
                logits, feats = net(x_adv, layers)
                loss = F.cross_entropy(logits.float(), y)
                if extra_term is not None:
                    loss = loss + extra_term(model, x, y, x_adv, feats, net)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach().double() * len(y)   # float64 on the device: what Python floats summed
        if device.type == "cuda":
            torch.cuda.synchronize()   # the epoch's time includes its queued kernels
        epoch_time = time.perf_counter() - tic
        all_sum(total)
        broadcast_buffers(model)
        clean = evaluate(model, x_val, y_val, device=device)
        robust = evaluate(model, x_val, y_val, val_attack, device=device)
        history.append({"epoch": epoch + 1, "lr": cfg.lr_at(epoch, world), "global_batch": global_batch,
                        "train_loss": total.item() / len(order),
                        "val_loss": clean["loss"], "val_clean_accuracy": clean["accuracy"],
                        "val_pgd_accuracy": robust["accuracy"], "epoch_seconds": epoch_time})
        if is_main():
            log(" ".join(f"{k}={v:.4g}" for k, v in history[-1].items()))
            save_torch(checkpoint, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                    "epoch": epoch + 1, "history": history, "world_size": world,
                                    "global_batch": global_batch})
    return history
