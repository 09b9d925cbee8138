"""One adversarial-training loop for AT, ASK-Def and AT+SNN (they differ by one loss term).

loss = CE(f(PGD(x)), y) + extra_term(...). Every epoch draws its randomness from
seed + epoch, and a checkpoint (model, optimizer, history) is written atomically after each
epoch, so an interrupted run resumed from its checkpoint ends with the same weights.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from tqdm import tqdm

from askknn.attacks.pgd import PGD
from askknn.data import PreparedData, to_float
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
    wide_attack: dict | None = None   # at_wide: {eps, steps, step_size} of the training attack only

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

    def lr_at(self, epoch: int) -> float:
        return self.lr * self.gamma ** sum(epoch >= m for m in self.milestones)


# An extra loss term: (model, x, y, x_adv, features of x_adv at term.layers) -> scalar.
ExtraTerm = Callable[..., torch.Tensor]


def crop_flip(x: torch.Tensor, pad: int = 4) -> torch.Tensor:
    """Random crop (zero padding) and horizontal flip, per image, vectorised."""
    b, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy, dx = torch.randint(0, 2 * pad + 1, (2, b))
    rows = (dy[:, None] + torch.arange(h))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w))[:, None, None, :]
    out = padded[torch.arange(b)[:, None, None, None], torch.arange(x.shape[1])[None, :, None, None], rows, cols]
    flip = torch.rand(b) < 0.5
    out[flip] = out[flip].flip(-1)
    return out


@torch.no_grad()
def evaluate(model, x_u8: torch.Tensor, y: torch.Tensor, attack=None, batch_size: int = 500,
             device="cpu") -> dict[str, float]:
    """Mean CE loss and accuracy of the DNN on uint8 images, optionally under `attack`."""
    model.eval()
    loss = correct = 0.0
    for start in range(0, len(y), batch_size):
        x = to_float(x_u8[start:start + batch_size].to(device))
        t = y[start:start + batch_size].to(device)
        if attack is not None:
            with torch.enable_grad():
                x = attack(model, x, t)
        logits = model(x)
        loss += F.cross_entropy(logits, t, reduction="sum").item()
        correct += (logits.argmax(1) == t).sum().item()
    return {"loss": loss / len(y), "accuracy": correct / len(y)}


def load_checkpoint(path: Path, model, optimizer) -> tuple[int, list]:
    """(epochs done, history) from `path`, or (0, []) to start over. A checkpoint that cannot be read
    (truncated, refused by weights_only loading, or of another shape) never blocks training: it is
    renamed aside to `<name>.unreadable`, a warning names it, and the model and optimizer keep their
    fresh state, so the run is the same as one that never had a checkpoint."""
    import copy
    import os
    import warnings

    path = Path(path)
    if not path.exists():
        return 0, []
    fresh_model, fresh_optimizer = copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict())
    try:
        state = load_torch(path)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        epoch, history = int(state["epoch"]), list(state["history"])
    except Exception as exc:   # UnreadableFile, missing keys, mismatched shapes: all mean "start over"
        model.load_state_dict(fresh_model)
        optimizer.load_state_dict(fresh_optimizer)
        aside = path.with_name(path.name + ".unreadable")
        os.replace(path, aside)
        warnings.warn(f"checkpoint {path} cannot be resumed ({exc}); moved it to {aside} and training "
                      f"starts over from epoch 0", RuntimeWarning, stacklevel=2)
        return 0, []
    return epoch, history


def train_model(model, data: PreparedData, cfg: TrainConfig, checkpoint: Path, extra_term: ExtraTerm | None = None,
                device="cpu", log: Callable[[str], None] = print) -> list[dict]:
    """Train `model` in place, resuming from `checkpoint` if it exists; returns per-epoch history."""
    model.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                nesterov=cfg.nesterov, weight_decay=cfg.weight_decay)
    start, history = load_checkpoint(checkpoint, model, optimizer)
    if start:
        log(f"resuming from {checkpoint} after epoch {start}")
    x_train, y_train = data.split("train")
    x_val, y_val = data.split("val")
    attack, val_attack = cfg.training_pgd(), cfg.pgd(cfg.val_pgd_steps)
    layers = getattr(extra_term, "layers", [])
    for epoch in range(start, cfg.epochs):
        torch.manual_seed(cfg.seed * 100_003 + epoch)
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr_at(epoch)
        order = torch.randperm(len(y_train))
        tic, total, seen = time.perf_counter(), 0.0, 0
        bar = tqdm(range(0, len(order), cfg.batch_size), desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False,
                   disable=None)  # no bar when the output is not a terminal
        for start_idx in bar:
            idx = order[start_idx:start_idx + cfg.batch_size]
            x, y = to_float(x_train[idx]).to(device), y_train[idx].to(device)
            if cfg.augment == "crop_flip":
                x = crop_flip(x)
            x_adv = attack(model, x, y)
            model.train()
            logits, feats = model.forward_with_features(x_adv, layers)
            loss = F.cross_entropy(logits, y)
            if extra_term is not None:
                loss = loss + extra_term(model, x, y, x_adv, feats)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, seen = total + loss.item() * len(y), seen + len(y)
            bar.set_postfix(loss=f"{total / seen:.3f}")
        epoch_time = time.perf_counter() - tic
        clean, robust = evaluate(model, x_val, y_val, device=device), evaluate(model, x_val, y_val, val_attack, device=device)
        history.append({"epoch": epoch + 1, "lr": cfg.lr_at(epoch), "train_loss": total / seen,
                        "val_loss": clean["loss"], "val_clean_accuracy": clean["accuracy"],
                        "val_pgd_accuracy": robust["accuracy"], "epoch_seconds": epoch_time})
        log(" ".join(f"{k}={v:.4g}" for k, v in history[-1].items()))
        save_torch(checkpoint, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                "epoch": epoch + 1, "history": history})
    return history
