"""Running an attack over the evaluation images and judging it with the real DkNN.

Hyper-parameters an attack leaves open (ASK-Atk's tau and omega, DkNN-Atk's sigmoid steepness)
are chosen on the first batch: every candidate attacks it, the one leaving the lowest DkNN
accuracy wins and is kept for the remaining batches. The grid and the choice go into the metrics.
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch

from askknn.data import to_float
from askknn.dknn import DeepKNN


def dknn_scores(model, x: torch.Tensor, y: torch.Tensor, dknns: dict[str, DeepKNN]) -> dict[str, np.ndarray]:
    """Per DkNN configuration, whether each input is classified correctly."""
    layers = sorted({layer for d in dknns.values() for layer in d.layers})
    model.eval()
    with torch.no_grad():
        feats = model.features(x, layers)
    y = y.cpu().numpy()
    return {name: d.predict(feats) == y for name, d in dknns.items()}


def tune_on_batch(make_attack: Callable[..., Callable], grid: list[dict], model, x, y, judge: DeepKNN):
    """The grid entry whose attack leaves `judge` least accurate on (x, y): (entry, its x_adv, its
    seconds, every entry's accuracy)."""
    results, best = [], None
    for hyper in grid:
        tic = time.perf_counter()
        x_adv = make_attack(**hyper)(model, x, y)
        seconds = time.perf_counter() - tic
        acc = float(dknn_scores(model, x_adv, y, {"judge": judge})["judge"].mean())
        results.append({**hyper, "dknn_accuracy": acc})
        if best is None or acc < best[1]:
            best = (hyper, acc, x_adv, seconds)
    return best[0], best[2], best[3], results


def run_attack(make_attack: Callable[..., Callable], model, images: torch.Tensor, labels: torch.Tensor,
               dknns: dict[str, DeepKNN], batch_size: int, grid: list[dict] | None = None, device="cpu") -> dict:
    """Attack uint8 `images` batch by batch; DkNN accuracy (clean and adversarial) per configuration.

    `make_attack(**hyper)` builds the attack; with a `grid`, hyper is tuned on the first batch
    against the first DkNN in `dknns` and the winner's adversarial examples for that batch are kept.
    Time per image covers the attack calls that produced the kept examples.
    """
    judge = next(iter(dknns.values()))
    clean = {name: [] for name in dknns}
    adv = {name: [] for name in dknns}
    chosen, tuning, seconds, attack = {}, [], 0.0, None
    for start in range(0, len(labels), batch_size):
        x = to_float(images[start:start + batch_size].to(device))
        y = labels[start:start + batch_size].to(device)
        for name, ok in dknn_scores(model, x, y, dknns).items():
            clean[name].append(ok)
        if attack is None and grid:
            chosen, x_adv, spent, tuning = tune_on_batch(make_attack, grid, model, x, y, judge)
            attack = make_attack(**chosen)
        else:
            attack = attack or make_attack()
            tic = time.perf_counter()
            x_adv = attack(model, x, y)
            spent = time.perf_counter() - tic
        seconds += spent
        for name, ok in dknn_scores(model, x_adv, y, dknns).items():
            adv[name].append(ok)
    result = {"seconds_per_image": seconds / len(labels), "images": int(len(labels)), "chosen": chosen,
              "tuning": tuning, "dknn": {}}
    for name in dknns:
        c, a = np.concatenate(clean[name]), np.concatenate(adv[name])
        result["dknn"][name] = {"clean_accuracy": float(c.mean()), "accuracy": float(a.mean()),
                                "success_rate": float((~a[c]).mean()) if c.any() else 0.0}
    return result
