"""SW20: the gradient-based attack on kNN and kNN-based models of Sitawarin & Wagner, "Minimum-Norm
Adversarial Examples on KNN and KNN-Based Models" (IEEE S&P Workshops / DLS 2020, arXiv 2003.06559;
the authors' code: chawins/knn-defense, lib/dknn_attack_v2.py), in the fixed-budget l_inf form of
the ASK paper's comparison.

What is the paper's (and its code's). With z_l the features at attacked layer l in the metric's
geometry (L2-normalised for cosine, as the original's cosine DkNN; raw for l2), the attack minimises

    sum_l sum_j relu(s_j * (||z_l(x') - z_l(g_j)||^2 - t_l(x')) + 1e-5)

over m guides g_j: m/2 bank points of the TRUE class (s_j = -1: pushed beyond the threshold) and m/2
of the target class (s_j = +1: pulled within it). t_l(x') is the squared distance from the current
x' to its K-th nearest bank point at layer l (any class). The target is the wrong class whose m/2
nearest bank points at the first attacked layer have the smallest mean squared distance to x'; the
guides are the m/2 nearest points of the true class and of the target there, and the same bank
points serve at every attacked layer. Target, guides and thresholds are chosen again at the current
x' every few iterations (the code's default: every 100 of 500), and the real DkNN judges x' as often
to keep the best adversarial example. The 1e-5 inside the relu is the original's: a guide exactly on
the threshold still counts.

What is adapted, and why. The original is a minimum-norm attack: it adds the norm of x' - x to the
objective times a constant c found by binary search, optimises in a tanh box with RMSprop, shrinks m
for inputs already fooled, and keeps the adversarial example of smallest norm. Table 1 compares
every attack at one l_inf budget eps and 20 steps, so here the objective alone is minimised inside
the eps ball with the shared sign-step ascent of `askknn.attacks.base.Attack` (random start, steps
of eps/4) and none of that machinery:
- re-selection every `reselect` steps (default 4 of 20: the original's one fifth of a run, 100 of
  500, as in its demo's 200 of 1000), at the iterate about to be stepped from;
- the real DkNN (the attacked layers, K = `k`) judges the iterate at each re-selection and the last
  one. Inside the ball every point meets the budget, so the first point it misclassifies is kept
  (the original's smallest-norm rule has nothing left to choose); an input never misclassified
  keeps its lowest-objective point since the last re-selection (values against other guides and
  thresholds are not comparable), the last iterate included;
- m is chosen by the caller (`build` below tunes m // 2, the guides of each class, on held-out
  images, at least (K + 1) // 2, the fewest the original uses, since fewer cannot outvote the true
  class).

All reference features come from the stored bank; only x' goes through the network, once per step,
up to the deepest attacked layer; the re-selections and judgements reuse that pass's features.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from askknn.attacks.base import Attack
from askknn.attacks.dknn_attack import in_geometry
from askknn.bank import FeatureBank
from askknn.dknn import DeepKNN
from askknn.shared import METRICS, ParamError, choice, majority

HINGE_OFFSET = 1e-5   # the original's: a guide exactly on the threshold still counts


def class_guides(bank: FeatureBank, layer: str, metric: str, features, y: np.ndarray,
                 half: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The target class (B,) and the bank indices (B, half) of the true class's and the target's
    `half` nearest points at `layer`, nearest first. The target is the wrong class whose `half`
    nearest points have the smallest mean squared distance (the original averages faiss's squared
    distances, which can rank classes differently from plain ones)."""
    dist, idx = bank.search_per_class(layer, metric, features, half)     # (B, C, half), squared
    mean = dist.mean(-1)
    rows = np.arange(len(y))
    mean[rows, y] = np.inf
    target = mean.argmin(1)
    return target, idx[rows, y], idx[rows, target]


def squared_distances(features: torch.Tensor, guides: torch.Tensor, guide_sq_norms: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances (B, m) from features (B, D) to per-example guides (B, m, D), both in
    the metric's geometry: one matrix product instead of a (B, m, D) difference; clamped at 0 against
    rounding."""
    dot = torch.einsum("bd,bmd->bm", features, guides)
    return (features.pow(2).sum(-1, keepdim=True) - 2 * dot + guide_sq_norms).clamp_min(0)


class SW20References(NamedTuple):
    """Guides and thresholds chosen at one iterate."""
    target: np.ndarray        # (B,) target classes
    guides: np.ndarray        # (B, m) bank indices: m // 2 of the true class, then m // 2 of the target
    signs: torch.Tensor       # (m,) -1 for the true class's guides (pushed out), +1 for the target's
    # layer -> (guide vectors (B, m, D) in the metric's geometry, their squared norms (B, m),
    # threshold t_l (B, 1)), on the input's device
    layers: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


class SW20Attack(Attack):
    """SW20 (Sitawarin & Wagner 2020, arXiv 2003.06559) on the DkNN layers `layers` within the l_inf
    ball of radius eps (see the module docstring for what is the paper's and what is adapted).

    guides: m, split into m // 2 guides of the true class and m // 2 of the target; k: K, both the
    rank of the neighbour that sets the threshold and the judging DkNN's K; reselect: steps between
    re-selections of target, guides and thresholds at the current iterate (and judgements by the DkNN).
    """

    def __init__(self, bank: FeatureBank, layers, eps: float, metric: str = "cosine", guides: int = 6,
                 k: int = 5, reselect: int = 4, steps: int = 20, step_size: float = 2 / 255,
                 random_start: bool = True, seed: int | None = None):
        super().__init__(eps, steps, step_size, random_start, seed=seed)
        if not layers:
            raise ParamError("layers is empty; SW20 needs at least one layer to attack")
        choice("metric", metric, METRICS)
        if guides < 2:
            raise ParamError(f"guides (m) = {guides} must be at least 2: m // 2 of the true class and of the target")
        bank.check(layers, guides // 2, f"guides (m) // 2 (m = {guides})")
        if k < 1:
            raise ParamError(f"k = {k} must be at least 1")
        bank.check(layers, k, "k")
        if reselect < 1:
            raise ParamError(f"reselect = {reselect} must be at least 1 (steps between re-selections)")
        self.bank, self.layers, self.metric = bank, list(layers), metric
        self.half, self.k, self.reselect = guides // 2, k, reselect
        self.judge = DeepKNN(bank, layers, k, metric)

    @torch.no_grad()
    def select(self, features: dict[str, torch.Tensor], y: torch.Tensor,
               nearest: dict[str, tuple[np.ndarray, np.ndarray]]) -> SW20References:
        """Target, guides and thresholds at the point whose features (at every attacked layer) and
        K nearest bank points (`nearest`, the judging DkNN's search) are given."""
        device = features[self.layers[0]].device
        target, true_idx, target_idx = class_guides(self.bank, self.layers[0], self.metric,
                                                    features[self.layers[0]], y.cpu().numpy(), self.half)
        guides = np.concatenate([true_idx, target_idx], 1)
        signs = torch.cat([-torch.ones(self.half), torch.ones(self.half)]).to(device)
        layers = {}
        for layer in self.layers:
            vectors = self.bank.gather(layer, self.metric, guides).to(device)
            threshold = np.ascontiguousarray(nearest[layer][0][:, self.k - 1])
            layers[layer] = vectors, vectors.pow(2).sum(-1), torch.from_numpy(threshold).to(device)[:, None]
        return SW20References(target, guides, signs, layers)

    def hinge(self, features: dict[str, torch.Tensor], refs: SW20References) -> torch.Tensor:
        """The objective to minimise, per example (>= 0)."""
        total = 0
        for layer, (guides, sq_norms, threshold) in refs.layers.items():
            dist = squared_distances(in_geometry(features[layer], self.metric), guides, sq_norms)
            total = total + F.relu(refs.signs * (dist - threshold) + HINGE_OFFSET).sum(1)
        return total

    def loss(self, model, x_adv, y, refs) -> torch.Tensor:
        return -self.hinge(model.features(x_adv, self.layers), refs)

    def keep_fooled(self, nearest: dict[str, tuple[np.ndarray, np.ndarray]], x_adv: torch.Tensor, y: torch.Tensor,
                    kept: torch.Tensor, fooled: torch.Tensor) -> None:
        """Judge x_adv (given its K nearest bank points) with the DkNN; in place, keep it for every
        input it misclassifies for the first time and mark those inputs fooled."""
        predictions = self.judge.votes_of(self.judge.labels_of(nearest))[1]
        new = (torch.from_numpy(predictions).to(y.device) != y) & ~fooled
        kept[new] = x_adv[new]
        fooled |= new

    def ascend(self, model, x, y, context) -> torch.Tensor:
        """Sign steps ascending -hinge from a random start, re-selecting and judging every `reselect` steps;
        returns each input's kept point (see the module docstring)."""
        x_adv = self.start(x)
        kept, kept_loss = x_adv.clone(), torch.full((len(y),), -torch.inf, device=x.device)
        fooled = torch.zeros(len(y), dtype=torch.bool, device=x.device)
        for t in range(self.steps + 1):
            last = t == self.steps
            x_adv.requires_grad_(not last)
            with torch.set_grad_enabled(not last):
                features = model.features(x_adv, self.layers)
            plain = {layer: f.detach() for layer, f in features.items()}
            if t % self.reselect == 0 or last:   # one search: the judgement's, and the thresholds'
                nearest = self.judge.nearest(plain)
                self.keep_fooled(nearest, x_adv.detach(), y, kept, fooled)
            if t == 0 or (t % self.reselect == 0 and not last):
                refs = self.select(plain, y, nearest)
                kept_loss.fill_(-torch.inf)
            loss = -self.hinge(features, refs)
            better = ~fooled & (loss.detach() > kept_loss)
            kept[better], kept_loss[better] = x_adv.detach()[better], loss.detach()[better]
            if last:
                return kept
            grad, = torch.autograd.grad(loss.sum(), x_adv)
            x_adv = self.project(x_adv.detach() + self.step_size * grad.sign(), x)


def build(suite, layers, metric: str, eps: int):
    """The registry's builder: SW20 with the DkNN's K and its grid, the guides per class (m // 2) of
    attacks.sw20.guides_grid, each raised to at least a majority of K, the fewest the original uses
    (fewer cannot outvote the true class)."""
    cfg = suite.cfg["sw20"]

    def make(seed, half):
        return SW20Attack(suite.bank, layers, metric=metric, guides=2 * half, k=suite.k, reselect=cfg["reselect"],
                          seed=seed, **suite.budget(eps))
    return make, [{"half": h} for h in sorted({max(h, majority(suite.k)) for h in cfg["guides_grid"]})]
