"""ASK-Atk: the Adversarial Soft kNN attack (Wang et al., "ASK: Adversarial Soft k-Nearest
Neighbor Attack and Defense", Section 3 and Algorithm 2).

For every clean input the references are found once per attacked layer from the stored feature
bank: X+ = the K+ nearest bank points of the true class, X- = the K- nearest bank points of
every other class (or K- random ones, Appendix D Table 7). The attack then ascends
sum_l omega_l L_ask^l (attack form, S = exp of the mean similarity) with sign steps inside the
l_inf ball. Only the perturbed input goes through the network, and only up to the deepest
attacked layer; the references' features come from the bank.
"""
from __future__ import annotations

import torch

from askknn.attacks.base import Attack
from askknn.bank import FeatureBank
from askknn.losses import ask_attack_loss, class_pooling, similarity
from askknn.shared import METRICS, ParamError, choice

TARGETS = (None, "nearest", "random")


def per_layer(name: str, value, layers) -> dict[str, float]:
    values = value if isinstance(value, dict) else {layer: value for layer in layers}
    missing = [layer for layer in layers if layer not in values]
    if missing:
        raise ParamError(f"{name} gives no value for layer(s) {', '.join(missing)}")
    return {layer: float(values[layer]) for layer in layers}


def class_mean_references(vectors: torch.Tensor, idx: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
    """Mean (B, C, D) of the first sizes[b, c] references idx[b, c] of each class, on the vectors' device.

    For cosine, mean_k cos(f, r_k) = f_hat . mean_k r_hat_k, so the attack-form logits need one
    vector per class instead of K: the same loss with K times less work per step.
    """
    flat = idx[torch.arange(idx.shape[2], device=idx.device) < sizes[..., None]]
    offsets = torch.cumsum(sizes.flatten(), 0).roll(1)
    offsets[0] = 0
    means = torch.nn.functional.embedding_bag(flat, vectors, offsets, mode="mean")
    return means.view(*sizes.shape, -1)


class ASKAttack(Attack):
    """Non-targeted or targeted ASK-Atk on the DkNN layers `layers` (paper eq. 4-5).

    tau: temperature, one number or a {layer: tau} dict; omega: {layer: weight} summing to 1
    (default: equal weights); k_pos / k_neg: K+ and K-; target: None (non-targeted), "nearest"
    (the class whose K- nearest references are closest on average at the first attacked layer)
    or "random"; random_negatives: draw X- at random from each class instead of by kNN search.
    """

    def __init__(self, bank: FeatureBank, layers, eps: float, metric: str = "cosine", tau=0.03, omega=None,
                 k_pos: int = 5, k_neg: int = 5, target: str | None = None, random_negatives: bool = False,
                 steps: int = 20, step_size: float = 2 / 255, random_start: bool = True, seed: int | None = None):
        super().__init__(eps, steps, step_size, random_start, seed=seed)
        choice("metric", metric, METRICS)
        choice("target", target, TARGETS)
        bank.check(layers, k_pos, "k_pos (K+)")
        bank.check(layers, k_neg, "k_neg (K-)")
        if k_pos < 1 or k_neg < 1:
            raise ParamError(f"k_pos = {k_pos} and k_neg = {k_neg} must be at least 1")
        self.tau = per_layer("tau", tau, layers)
        if min(self.tau.values()) <= 0:
            raise ParamError(f"tau = {tau} must be positive")
        self.omega = per_layer("omega", omega if omega is not None else 1 / len(layers), layers)
        if abs(sum(self.omega.values()) - 1) > 1e-6 or min(self.omega.values()) < 0:
            raise ParamError(f"omega = {omega} must be non-negative weights summing to 1")
        self.bank, self.layers, self.metric = bank, list(layers), metric
        self.k_pos, self.k_neg, self.target, self.random_negatives = k_pos, k_neg, target, random_negatives

    def reference_indices(self, features: torch.Tensor, y: torch.Tensor,
                          layer: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Bank indices (B, C, max(K+, K-)) of each class's references, and the mean distance (B, C)
        from each input to the K- nearest bank points of each class, on the bank's search device."""
        dist, idx = self.bank.per_class(layer, self.metric, features, max(self.k_pos, self.k_neg))
        if self.random_negatives:   # X- only: X+ stays the true class's K+ nearest points
            y = y.to(idx.device)
            for c, members in enumerate(self.bank.class_members):
                other = y != c
                # K- distinct points per image: the top K- of uniform keys, a draw without replacement
                draws = self.rand(int(other.sum()), len(members)).topk(self.k_neg, dim=1).indices.numpy()
                idx[other, c, :self.k_neg] = torch.from_numpy(members[draws]).to(idx.device)
        return idx, dist[:, :, :self.k_neg].clamp_min(0).sqrt().mean(-1)   # the search's distances are squared

    def references(self, layer: str, idx: torch.Tensor, y: torch.Tensor, device) -> tuple:
        """Per layer: reference vectors (B, R, D), their labels (B, R) and, for l2, their squared
        norms; for cosine, one mean unit vector per class (see class_mean_references), labels None.
        Gathered where the bank's vectors are (the device, for the torch search)."""
        sizes = torch.full(idx.shape[:2], self.k_neg, device=idx.device)
        sizes[torch.arange(len(y), device=idx.device), y.to(idx.device)] = self.k_pos
        if self.metric == "cosine":
            vectors = self.bank.vector_tensor(layer, self.metric)
            means = class_mean_references(vectors, idx.to(vectors.device), sizes.to(vectors.device))
            return means.to(device), None, None
        flat = idx[torch.arange(idx.shape[2], device=idx.device) < sizes[..., None]].view(len(y), -1)
        refs = self.bank.gather(layer, self.metric, flat).to(device)
        labels = self.bank.label_tensor
        return refs, labels[flat.to(labels.device)].to(device), refs.pow(2).sum(-1)

    def choose_target(self, y: torch.Tensor, mean_dist: torch.Tensor) -> torch.Tensor | None:
        if self.target is None:
            return None
        if self.target == "random":
            shift = self.randint(self.bank.num_classes, y.shape, low=1, device=y.device)
            return (y + shift) % self.bank.num_classes
        mean_dist = mean_dist.clone()
        mean_dist[torch.arange(len(y), device=mean_dist.device), y.to(mean_dist.device)] = torch.inf
        return mean_dist.argmin(1).to(y.device)

    @torch.no_grad()
    def prepare(self, model, x, y):
        """Per layer (reference vectors, their ClassPooling, squared norms or None), and the target;
        everything the loss needs that does not change during the attack, so each step only pools."""
        clean = model.features(x, self.layers)
        found, target = {}, None
        for i, layer in enumerate(self.layers):
            idx, mean_dist = self.reference_indices(clean[layer], y, layer)
            found[layer] = self.references(layer, idx, y, x.device)
            if i == 0:
                target = self.choose_target(y, mean_dist)
        refs = {layer: (vectors, class_pooling(labels, y, self.bank.num_classes, target), sq_norms)
                for layer, (vectors, labels, sq_norms) in found.items()}
        return refs, target

    def similarities(self, model, x_adv, refs: dict):
        """Per attacked layer: omega_l, the similarities A(x', r) / tau_l (B, R) and their ClassPooling."""
        feats = model.features(x_adv, self.layers)
        for layer, (vectors, pooling, sq_norms) in refs.items():
            yield (self.omega[layer], similarity(feats[layer], vectors, self.metric, self.tau[layer], True, sq_norms),
                   pooling)

    def loss(self, model, x_adv, y, context) -> torch.Tensor:
        refs, _ = context
        return sum(omega * ask_attack_loss(sim, y, pooling)
                   for omega, sim, pooling in self.similarities(model, x_adv, refs))


def tuned(suite, layers, metric: str) -> dict:
    """ASK-Atk's tuned tau and omega for these layers of the suite's model, as ASKAttack arguments."""
    hyper = suite.tuned.of("ask", layers, metric, [{}], {})
    omega = hyper.get("omega")
    return {"tau": hyper["tau"], "omega": None if omega is None else {layers[0]: omega, layers[1]: 1 - omega}}


def build(suite, layers, metric: str, eps: int, **options):
    """The registry's builder: ASK-Atk and its grid (tau; omega, the first layer's weight, when two
    layers are attacked). A `tau` option fixes tau instead of the tuned one (Figure 4)."""
    cfg = suite.cfg["ask"]
    kw = {"k_pos": cfg["k_pos"], "k_neg": cfg["k_neg"], **{k: v for k, v in options.items() if k != "tau"}}

    def make(seed, tau=None, omega=None):
        weights = None if omega is None else {layers[0]: omega, layers[1]: 1 - omega}
        return ASKAttack(suite.bank, layers, metric=metric, **suite.budget(eps), **kw, seed=seed,
                         **({"tau": tau} if tau is not None else {}), omega=weights)

    grid = [{"tau": t} for t in cfg["tau_grid"][metric]]
    if len(layers) == 2:
        grid = [{**g, "omega": w} for g in grid for w in cfg["omega_grid"]]
    return make, grid
