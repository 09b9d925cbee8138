"""Running an attack over a set of images and judging it with the real DkNN, and tuning an
attack's open hyper-parameters.

Tuning (ASK-Atk's tau and omega, DkNN-Atk's sigmoid steepness) happens on a tuning set drawn from
the held-out split of the training data: every grid entry attacks it, the entry leaving the
lowest DkNN accuracy wins (the first one on ties). The evaluation images never reach the tuner,
and no tuning example is scored.
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch

from askknn.bank import extract_features
from askknn.data import to_float
from askknn.dknn import DeepKNN, tie_rate
from askknn.stats import proportion


def dknn_scores(model, x: torch.Tensor, y: torch.Tensor, dknns: dict[str, DeepKNN]) -> dict[str, dict]:
    """Per DkNN configuration, whether each input is classified correctly (`correct`) and, for a
    calibrated DkNN, the credibility of its prediction (`credibility`)."""
    layers = sorted({layer for d in dknns.values() for layer in d.layers})
    model.eval()
    with torch.no_grad():
        feats = model.features(x, layers)
    y = y.cpu().numpy()
    scores = {}
    for name, d in dknns.items():
        counts, predictions = d.votes(feats)
        scores[name] = {"correct": predictions == y}
        if d.calibration is not None:
            scores[name]["credibility"] = d.credibility(counts)
    return scores


def batches(images: torch.Tensor, labels: torch.Tensor, batch_size: int, device):
    for start in range(0, len(labels), batch_size):
        yield to_float(images[start:start + batch_size].to(device)), labels[start:start + batch_size].to(device)


def joined(parts: list[dict]) -> dict:
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


def clean_scores(model, images: torch.Tensor, labels: torch.Tensor, dknns: dict[str, DeepKNN], batch_size: int,
                 device="cpu") -> dict[str, dict]:
    """`dknn_scores` of the clean uint8 `images`, batch by batch."""
    parts = {name: [] for name in dknns}
    for x, y in batches(images, labels, batch_size, device):
        for name, score in dknn_scores(model, x, y, dknns).items():
            parts[name].append(score)
    return {name: joined(p) for name, p in parts.items()}


def run_attack(attack: Callable, model, images: torch.Tensor, labels: torch.Tensor, dknns: dict[str, DeepKNN],
               batch_size: int, device="cpu", clean: dict | None = None) -> dict:
    """Attack uint8 `images` batch by batch with one attack object (it owns the run's generator).

    Returns the seconds per image spent in the attack and, per DkNN configuration, the per-image
    outcomes: `clean` (correct on the clean image, from `clean` = `clean_scores` of the same
    images when the caller has them) and `adversarial` (robust: correct on the clean image AND
    under attack, the convention of AutoAttack and RobustBench, so an attack that moves a
    misclassified image to its true class earns the model nothing), and for a calibrated DkNN the
    credibility on both (`credibility`: {clean, adversarial}).
    """
    clean = clean or clean_scores(model, images, labels, dknns, batch_size, device)
    adv = {name: [] for name in dknns}
    seconds = 0.0
    for x, y in batches(images, labels, batch_size, device):
        tic = time.perf_counter()
        x_adv = attack(model, x, y)
        seconds += time.perf_counter() - tic
        for name, score in dknn_scores(model, x_adv, y, dknns).items():
            adv[name].append(score)
    outcomes = {}
    for name in dknns:
        after = joined(adv[name])
        robust = clean[name]["correct"] & after["correct"]
        outcomes[name] = {"clean": clean[name]["correct"], "adversarial": robust}
        if "credibility" in after:
            outcomes[name]["credibility"] = {"clean": clean[name]["credibility"], "adversarial": after["credibility"]}
    return {"seconds_per_image": seconds / len(labels), "images": int(len(labels)), "outcomes": outcomes}


def dnn_robustness(attack: Callable, model, images: torch.Tensor, labels: torch.Tensor, batch_size: int,
                   device="cpu") -> dict[str, np.ndarray]:
    """Per image, whether the DNN is correct on it clean (`clean`) and both clean and under
    `attack` (`robust`)."""
    robust, clean = [], []
    for x, y in batches(images, labels, batch_size, device):
        x_adv = attack(model, x, y)
        with torch.no_grad():
            right = model(x).argmax(1) == y
            clean.append(right.cpu())
            robust.append((right & (model(x_adv).argmax(1) == y)).cpu())
    return {"robust": torch.cat(robust).numpy(), "clean": torch.cat(clean).numpy()}


def best_of_grid(make_attack: Callable[..., Callable], grid: list[dict], model, images: torch.Tensor,
         labels: torch.Tensor, judge: DeepKNN, batch_size: int, device="cpu") -> tuple[dict, list[dict]]:
    """The grid entry whose attack leaves `judge` least accurate on the tuning images, and every
    entry's accuracy. Each entry's attack is built afresh, so all draw the same random numbers."""
    results = []
    for hyper in grid:
        run = run_attack(make_attack(**hyper), model, images, labels, {"judge": judge}, batch_size, device)
        results.append({**hyper, "dknn_accuracy": float(run["outcomes"]["judge"]["adversarial"].mean())})
    best = min(range(len(grid)), key=lambda i: results[i]["dknn_accuracy"])
    return grid[best], results


def on_grid_edge(chosen: dict, grid: list[dict]) -> list[str]:
    """The hyper-parameters whose chosen value is the smallest or largest that the grid offers."""
    edges = []
    for key, value in chosen.items():
        values = sorted({entry[key] for entry in grid})
        if len(values) > 1 and value in (values[0], values[-1]):
            edges.append(key)
    return edges


@torch.no_grad()
def dnn_correct(model, images: torch.Tensor, labels: torch.Tensor, batch_size: int, device="cpu") -> np.ndarray:
    """Per uint8 image, whether the DNN classifies it correctly."""
    preds = [model(to_float(images[i:i + batch_size].to(device))).argmax(1).cpu()
             for i in range(0, len(labels), batch_size)]
    return (torch.cat(preds) == labels).numpy()


def clean_accuracies(model, bank, images: torch.Tensor, labels: torch.Tensor, dknn: dict, device="cpu") -> dict:
    """The DNN's and every DkNN configuration's clean accuracy (n and 95% interval) on uint8 `images`,
    with each DkNN's tie rate (how often the tie rule decided); dknn: the preset's dknn section."""
    features = extract_features(model, images, dknn["layers"], dknn["batch_size"], device)
    result = {"dnn": proportion(dnn_correct(model, images, labels, dknn["batch_size"], device)), "dknn": {}}
    for metric in dknn["metrics"]:
        result["dknn"][metric] = {}
        for layers in dknn["layer_sets"]:
            counts, predictions = DeepKNN(bank, layers, dknn["k"], metric).votes(features)
            result["dknn"][metric]["+".join(layers)] = {**proportion(predictions == labels.numpy()),
                                                        "tie_rate": tie_rate(counts)}
    return result
