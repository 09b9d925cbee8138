"""DkNN-Atk: the guide-sample attack of Sitawarin & Wagner ("On the robustness of deep k-nearest
neighbors", IEEE S&P Workshops 2019), in the l_inf form the ASK paper compares against (Wang et
al., Appendix C).

The target class is the wrong class whose m nearest bank points (at the first attacked layer) are
closest on average to the clean input; those m points are the guides, fixed for the whole attack.
The attack pulls x' towards the guides at every attacked layer by maximising the soft count

    sum_l sum_j sigmoid(a * (eta_l - ||z_l(x') - z_l(g_j)||_2)),

z = features in the metric's geometry (L2-normalised for cosine), eta_l = the mean distance from
held-out inputs to their K-th nearest bank point (`dknn_thresholds`). As a -> 0 the gradient tends
to a / 4 times that of minus the summed distances, whose direction sign steps follow whatever the
scale: a = 0 stands for that limit, the end of the steepness range, and the attack then minimises
sum_l sum_j ||z_l(x') - z_l(g_j)||_2. The guides' features come
from the stored bank; only x' goes through the network, up to the deepest attacked layer.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from askknn.attacks.ask import per_layer
from askknn.attacks.base import Attack
from askknn.bank import FeatureBank
from askknn.losses import similarity
from askknn.shared import METRICS, ParamError, choice

OPTIMIZERS = ("sign", "adam")


def dknn_thresholds(bank: FeatureBank, held_out: dict[str, np.ndarray], layers, k: int,
                    metric: str) -> dict[str, float]:
    """eta_l = mean (plain, not squared) distance from the held-out features to their k-th nearest
    bank point at layer l, in the metric's geometry (Sitawarin & Wagner's sigmoid threshold)."""
    bank.check(layers, k, "k")
    missing = [layer for layer in layers if layer not in held_out]
    if missing:
        raise ParamError(f"held_out has no features for layer(s) {', '.join(missing)}")
    return {layer: float(np.sqrt(np.maximum(bank.search(layer, metric, held_out[layer], k)[0][:, k - 1], 0)).mean())
            for layer in layers}


def target_guides(bank: FeatureBank, layer: str, metric: str, features: np.ndarray, y: np.ndarray,
                  m: int) -> tuple[np.ndarray, np.ndarray]:
    """The target class (B,) and its guides' bank indices (B, m) for clean features (B, D) at `layer`:
    the target is the wrong class whose m nearest bank points are closest on average (plain
    distances); the guides are those m points, nearest first."""
    dist, idx = bank.search_per_class(layer, metric, features, m)
    mean_dist = np.sqrt(np.maximum(dist, 0)).mean(-1)
    rows = np.arange(len(y))
    mean_dist[rows, y] = np.inf
    target = mean_dist.argmin(1)
    return target, idx[rows, target]


def in_geometry(features: torch.Tensor, metric: str) -> torch.Tensor:
    return F.normalize(features, dim=1) if metric == "cosine" else features


class DkNNAttack(Attack):
    """DkNN-Atk on the DkNN layers `layers` within the l_inf ball of radius eps.

    thresholds: {layer: eta_l} (see `dknn_thresholds`); guides: m; steepness: the sigmoid's a (0: its limit);
    optimizer: "sign" = the base class's sign steps (the ASK paper's 20-step budget) or "adam" =
    the original's Adam on w with x' = lo + (hi - lo) (tanh(w) + 1) / 2, lo/hi the clipped ball.
    """

    def __init__(self, bank: FeatureBank, layers, eps: float, thresholds: dict[str, float], metric: str = "cosine",
                 guides: int = 75, steepness: float = 4.0, optimizer: str = "sign", steps: int = 20,
                 step_size: float = 2 / 255, adam_lr: float = 0.01, random_start: bool = True,
                 seed: int | None = None):
        super().__init__(eps, steps, step_size, random_start, seed=seed)
        if not layers:
            raise ParamError("layers is empty; DkNN-Atk needs at least one layer")
        choice("metric", metric, METRICS)
        choice("optimizer", optimizer, OPTIMIZERS)
        if guides < 1:
            raise ParamError(f"guides (m) = {guides} must be at least 1")
        bank.check(layers, guides, "guides (m)")
        if steepness < 0:
            raise ParamError(f"steepness (a) = {steepness} must be >= 0 (0: the flat sigmoid's limit)")
        if adam_lr <= 0:
            raise ParamError(f"adam_lr = {adam_lr} must be positive")
        self.thresholds = per_layer("thresholds", thresholds, layers)
        self.bank, self.layers, self.metric = bank, list(layers), metric
        self.guides, self.steepness, self.optimizer, self.adam_lr = guides, steepness, optimizer, adam_lr

    @torch.no_grad()
    def prepare(self, model, x, y):
        first = self.layers[0]
        _, idx = target_guides(self.bank, first, self.metric, model.features(x, [first])[first].cpu().numpy(),
                               y.cpu().numpy(), self.guides)
        guides = {}
        for layer in self.layers:
            vectors = self.bank.gather(layer, self.metric, idx).to(x.device)
            guides[layer] = vectors, vectors.pow(2).sum(-1)   # norms precomputed: one einsum per step
        return guides

    def loss(self, model, x_adv, y, guides) -> torch.Tensor:
        feats = model.features(x_adv, self.layers)
        total = 0
        for layer, (vectors, sq_norms) in guides.items():
            # the l2 similarity at tau = 1 is minus the plain distance, here in the metric's geometry
            dist = -similarity(in_geometry(feats[layer], self.metric), vectors, "l2", 1.0, ref_sq_norms=sq_norms)
            total = total + self.soft_count(self.thresholds[layer] - dist)
        return total

    def soft_count(self, margin: torch.Tensor) -> torch.Tensor:
        """sum_j sigmoid(a * margin_j) per image, or at a = 0 the summed margins (the limit's direction)."""
        if self.steepness == 0:
            return margin.sum(1)
        return torch.sigmoid(self.steepness * margin).sum(1)

    def ascend(self, model, x, y, guides) -> torch.Tensor:
        if self.optimizer == "sign":
            return super().ascend(model, x, y, guides)
        return self.ascend_adam(model, x, y, guides)

    def ascend_adam(self, model, x, y, guides) -> torch.Tensor:
        """The original optimiser: Adam on w through the tanh box of the clipped ball, minimising
        the negative objective; the box keeps every iterate feasible without projection."""
        lo, hi = (x - self.eps).clamp(0, 1), (x + self.eps).clamp(0, 1)   # hi > lo since eps > 0

        def box(w: torch.Tensor) -> torch.Tensor:
            return lo + (hi - lo) * (torch.tanh(w) + 1) / 2

        unit = (self.start(x) - lo) / (hi - lo)
        w = torch.atanh((2 * unit - 1).clamp(-1 + 1e-6, 1 - 1e-6)).requires_grad_(True)
        opt = torch.optim.Adam([w], lr=self.adam_lr)
        for _ in range(self.steps):
            # grad w.r.t. w only, so no gradient accumulates on the model's parameters
            w.grad, = torch.autograd.grad(-self.loss(model, box(w), y, guides).sum(), w)
            opt.step()
        return self.project(box(w).detach(), x)   # only removes float rounding at the box's edges


def guide_count(cfg: dict, k: int) -> int:
    """DkNN-Atk's m (attacks.dknn_atk.guides): a number (the original's l_inf runs: 75), or `k`, the DkNN's K."""
    return k if cfg["guides"] == "k" else int(cfg["guides"])


def build(suite, layers, metric: str, eps: int):
    """The registry's builder: DkNN-Atk, its thresholds from the held-out features, and its grid
    (the sigmoid's steepness)."""
    cfg = suite.cfg["dknn_atk"]
    eta = dknn_thresholds(suite.bank, suite.held_out, layers, suite.k, metric)
    budget = suite.budget(eps)
    if cfg["optimizer"] == "adam":
        budget["steps"] = cfg["adam_steps"]

    def make(seed, steepness):
        return DkNNAttack(suite.bank, layers, thresholds=eta, metric=metric, guides=guide_count(cfg, suite.k),
                          steepness=steepness, optimizer=cfg["optimizer"], adam_lr=cfg["adam_lr"], seed=seed,
                          **budget)
    return make, [{"steepness": a} for a in cfg["steepness_grid"][metric]]
