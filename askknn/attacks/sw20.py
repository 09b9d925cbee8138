"""SW20: the gradient-based attack on kNN and kNN-based models of Sitawarin & Wagner, "Minimum-Norm
Adversarial Examples on KNN and KNN-Based Models" (IEEE S&P Workshops / DLS 2020, arXiv 2003.06559).

Implemented from the paper's description, in a fixed-budget l_inf form: no binary search on a
trade-off constant and no norm term; the objective is maximised inside the l_inf ball of radius eps
with the shared sign-step ascent of `askknn.attacks.base.Attack`.

It improves on DkNN-Atk (`askknn.attacks.dknn_attack`, the same authors' 2019 attack): instead of
pulling x' below a fixed distance threshold towards m guides of the target class, it asks that at
every attacked layer l, x' be closer to each guide g_j than to each of the K nearest bank points
o_i of the other classes, and relaxes these pairwise constraints into a hinge:

    loss(x') = - sum_l mean_{j, i} relu(d_l(x', g_j)^2 - d_l(x', o_i)^2 + margin * eta_l^2) / eta_l^2.

- d_l: the distance in the metric's geometry (features L2-normalised for cosine, raw for l2), as in
  DkNN-Atk (`in_geometry`).
- target and guides: chosen as DkNN-Atk chooses them (`target_guides`, at the first attacked layer):
  the wrong class whose m nearest bank points are closest on average; those m points are the
  guides at every attacked layer, fixed for the whole attack.
- others: the K nearest bank points of the clean input outside the target class (the true class
  included), found once per attacked layer.
- eta_l: DkNN-Atk's per-layer threshold (`dknn_thresholds`). Dividing by eta_l^2 is our addition,
  not the paper's: it puts layers with different distance scales on one scale so they can be
  summed; `margin` is in the same units.

All reference features come from the stored bank; only x' goes through the network, up to the
deepest attacked layer.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from askknn.attacks.ask import per_layer
from askknn.attacks.base import Attack
from askknn.attacks.dknn_attack import target_guides
from askknn.bank import FeatureBank
from askknn.losses import similarity
from askknn.params import METRICS, ParamError, choice


def other_neighbours(bank: FeatureBank, layer: str, metric: str, features, exclude: np.ndarray,
                     k: int) -> tuple[np.ndarray, np.ndarray]:
    """Squared distances and bank indices (B, k) of the k nearest bank points at `layer` outside
    class exclude[b], nearest first. Each class's k nearest, merged over the allowed classes, hold
    the k nearest of their union."""
    dist, idx = bank.search_per_class(layer, metric, features, k)      # (B, C, k)
    rows = np.arange(len(exclude))
    dist[rows, exclude] = np.inf
    dist, idx = dist.reshape(len(rows), -1), idx.reshape(len(rows), -1)
    order = np.argsort(dist, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(dist, order, 1), np.take_along_axis(idx, order, 1)


def squared_distances(features: torch.Tensor, refs: torch.Tensor, metric: str,
                      ref_sq_norms: torch.Tensor | None = None) -> torch.Tensor:
    """Squared distances (B, R) in the metric's geometry from features (B, D) to bank vectors refs
    (B, R, D) (already in that geometry: unit vectors for cosine), via `losses.similarity`:
    cosine: ||f/|f| - r||^2 = 2 - 2 cos(f, r), no square root; l2: the l2 similarity at tau = 1
    (minus the plain distance), squared, with the references' squared norms precomputed."""
    if metric == "cosine":
        return 2 - 2 * similarity(features, refs, "cosine", 1.0, refs_normalised=True)
    return similarity(features, refs, "l2", 1.0, ref_sq_norms=ref_sq_norms).pow(2)


class SW20References(NamedTuple):
    """What `SW20Attack.prepare` finds once per clean batch."""
    target: np.ndarray                  # (B,) target classes
    guides: np.ndarray                  # (B, m) bank indices of the guides (same at every layer)
    others: dict[str, np.ndarray]       # layer -> (B, K) bank indices of the nearest non-target points
    # layer -> (guide vectors (B, m, D), their squared norms, other vectors (B, K, D), their squared
    # norms), in the metric's geometry, on the input's device; the norms are None for cosine
    vectors: dict[str, tuple]


class SW20Attack(Attack):
    """SW20 (Sitawarin & Wagner 2020, arXiv 2003.06559) on the DkNN layers `layers` within the l_inf
    ball of radius eps, implemented from the paper's description in fixed-budget l_inf form (see the
    module docstring for the objective).

    thresholds: {layer: eta_l} (see `dknn_attack.dknn_thresholds`), the per-layer scale; guides: m,
    the target-class guides; k: K, the nearest non-target points each guide must beat (the DkNN's
    K); margin: >= 0, in units of eta_l^2.
    """

    def __init__(self, bank: FeatureBank, layers, eps: float, thresholds: dict[str, float], metric: str = "cosine",
                 guides: int = 5, k: int = 5, margin: float = 0.0, steps: int = 20, step_size: float = 2 / 255,
                 random_start: bool = True, seed: int | None = None):
        super().__init__(eps, steps, step_size, random_start, seed=seed)
        if not layers:
            raise ParamError("layers is empty; SW20 needs at least one layer to attack")
        choice("metric", metric, METRICS)
        if guides < 1:
            raise ParamError(f"guides (m) = {guides} must be at least 1")
        bank.check(layers, guides, "guides (m)")
        if k < 1:
            raise ParamError(f"k = {k} must be at least 1")
        bank.check(layers, k, "k")
        if not margin >= 0:
            raise ParamError(f"margin = {margin} must be non-negative (it is in units of eta_l^2)")
        self.thresholds = per_layer("thresholds", thresholds, layers)
        bad = [layer for layer, eta in self.thresholds.items() if not eta > 0]
        if bad:
            raise ParamError(f"thresholds must be positive (they scale the distances); "
                             f"got {', '.join(f'{layer}: {self.thresholds[layer]}' for layer in bad)}")
        self.bank, self.layers, self.metric = bank, list(layers), metric
        self.guides, self.k, self.margin = guides, k, float(margin)

    def _on_device(self, layer: str, idx: np.ndarray, device) -> tuple[torch.Tensor, torch.Tensor | None]:
        vectors = torch.from_numpy(self.bank.vectors(layer, self.metric)[idx]).to(device)
        return vectors, (None if self.metric == "cosine" else vectors.pow(2).sum(-1))

    @torch.no_grad()
    def prepare(self, model, x, y) -> SW20References:
        clean = {layer: f.float().cpu().numpy() for layer, f in model.features(x, self.layers).items()}
        target, guide_idx = target_guides(self.bank, self.layers[0], self.metric, clean[self.layers[0]],
                                          y.cpu().numpy(), self.guides)
        others, vectors = {}, {}
        for layer in self.layers:
            others[layer] = other_neighbours(self.bank, layer, self.metric, clean[layer], target, self.k)[1]
            vectors[layer] = (*self._on_device(layer, guide_idx, x.device),
                              *self._on_device(layer, others[layer], x.device))
        return SW20References(target, guide_idx, others, vectors)

    def hinge(self, model, x_adv: torch.Tensor, refs: SW20References) -> torch.Tensor:
        """Per-example sum over layers of the mean pairwise hinge (>= 0; 0 when every constraint
        holds with the margin)."""
        feats = model.features(x_adv, self.layers)
        total = 0
        for layer, (g, g_sq, o, o_sq) in refs.vectors.items():
            scale = self.thresholds[layer] ** 2
            to_guides = squared_distances(feats[layer], g, self.metric, g_sq) / scale      # (B, m)
            to_others = squared_distances(feats[layer], o, self.metric, o_sq) / scale      # (B, K)
            pairs = to_guides[:, :, None] - to_others[:, None, :] + self.margin
            total = total + F.relu(pairs).mean((1, 2))
        return total

    def loss(self, model, x_adv, y, refs) -> torch.Tensor:
        return -self.hinge(model, x_adv, refs)
