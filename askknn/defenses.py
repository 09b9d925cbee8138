"""The training methods: AT, and the two defenses that add one loss term to it.

- `at`: Madry PGD-AT, CE on PGD examples only.
- `at_wide`: the same AT, trained on PGD at ASK-Def's G2 budget (eps, steps, step size): the
  control that separates ASK-Def's loss term from its larger training budget.
- `askdef`: ASK-Def (paper Algorithm 1, eq. 6-7): + lambda * defense-form ASK loss at one layer on
  G2's examples, against a reference batch of `refs_per_class` random training images per class
  plus their PGD copies. The reference labels are tiled to match the images (the authors' code
  interleaves them and so mislabels half the references; fixed here).
- `atsnn`: + beta * soft nearest neighbour loss at one layer, over the global batch under torchrun.
"""
from __future__ import annotations

import dataclasses

import torch

from askknn.attacks.base import Attack
from askknn.data import PreparedData, to_float
from askknn.distributed import gather_batch
from askknn.losses import ask_loss, similarity, snn_loss
from askknn.shared import ParamError
from askknn.training import TrainConfig


class SharedReferenceASK(Attack):
    """ASK-Def's generator G2 (paper eq. 7): ascend the defense-form ASK loss at one layer against
    a reference batch shared by all inputs (the images and their labels are given)."""

    def __init__(self, refs: torch.Tensor, ref_labels: torch.Tensor, num_classes: int, layer: str, metric: str,
                 tau: float, eps: float, steps: int, step_size: float, train_mode: bool = False):
        super().__init__(eps, steps, step_size, train_mode=train_mode)
        self.refs, self.ref_labels, self.num_classes = refs, ref_labels, num_classes
        self.layer, self.metric, self.tau = layer, metric, tau

    @torch.no_grad()
    def prepare(self, model, x, y):
        return model.features(self.refs, [self.layer])[self.layer]

    def loss(self, model, x_adv, y, ref_features) -> torch.Tensor:
        sim = similarity(model.features(x_adv, [self.layer])[self.layer], ref_features, self.metric, self.tau)
        return ask_loss(sim, self.ref_labels.expand(len(y), -1), y, self.num_classes, "defense")


class AskDefTerm:
    """lambda * L_ask (defense form) on conv-layer features of G2(x) against a fresh reference batch."""

    layers: list = []   # needs nothing from the main forward pass

    def __init__(self, data: PreparedData, cfg: TrainConfig, lam: float, tau: float, metric: str, layer: str,
                 refs_per_class: int, eps: int, steps: int, step_size: float):
        self.x_train, self.y_train = data.split("train")
        self.members = [torch.nonzero(self.y_train == c).squeeze(1) for c in range(data.num_classes)]
        fewest = min(len(m) for m in self.members)
        if refs_per_class > fewest:
            raise ParamError(f"methods.askdef.refs_per_class = {refs_per_class} but the training split has "
                             f"{fewest} images of its smallest class; set it to at most {fewest}")
        self.num_classes, self.g1 = data.num_classes, cfg.pgd()
        self.lam, self.tau, self.metric, self.layer, self.refs_per_class = lam, tau, metric, layer, refs_per_class
        self.g2 = dict(eps=eps / 255, steps=steps, step_size=step_size / 255, train_mode=cfg.attack_mode == "train")

    def reference_batch(self, model, device) -> tuple[torch.Tensor, torch.Tensor]:
        """refs_per_class distinct random training images of every class, then their PGD copies; labels aligned.
        The picks are drawn and the images gathered where the model is, with no copy from the host, so
        a CUDA graph of the training step (train.cuda_graphs) draws new references at every replay."""
        if self.x_train.device != torch.device(device):   # once: the uint8 images and class lists move there
            self.x_train, self.y_train = self.x_train.to(device), self.y_train.to(device)
            self.members = [m.to(device) for m in self.members]
        idx = self.reference_picks(device)
        x, y = to_float(self.x_train[idx]), self.y_train[idx]
        return torch.cat([x, self.g1(model, x, y)]), torch.cat([y, y])

    def reference_picks(self, device) -> torch.Tensor:
        """Training-set indices of refs_per_class distinct random images of every class, class by class:
        the top k of uniform keys, a uniform draw without replacement that reads nothing on the host."""
        return torch.cat([m[torch.rand(len(m), device=device).topk(self.refs_per_class).indices]
                          for m in self.members])

    def __call__(self, model, x, y, x_adv, feats, net=None) -> torch.Tensor:
        refs, ref_labels = self.reference_batch(model, x.device)
        g2 = SharedReferenceASK(refs, ref_labels, self.num_classes, self.layer, self.metric, self.tau, **self.g2)
        x_adv2 = g2(model, x, y)
        model.train()
        net = model if net is None else net   # the DDP wrapper under torchrun: its forward syncs gradients
        both = net(torch.cat([x_adv2, refs]), [self.layer], head=False)[self.layer]
        sim = similarity(both[:len(x)], both[len(x):], self.metric, self.tau)
        return self.lam * ask_loss(sim, ref_labels.expand(len(x), -1), y, self.num_classes, "defense").mean()


class SnnTerm:
    """beta * soft nearest neighbour loss on one layer's features of the clean or adversarial batch.

    Under torchrun the loss pairs every image with the whole global batch, not only its rank's slice:
    each rank gathers the features and labels of all ranks and computes the single-process loss of
    the global batch. The gather's backward sums the ranks' (equal) gradients for each rank's own
    features, W times the single-process gradient, and DDP divides the summed parameter gradients by
    the W ranks: the update is the single-process one."""

    def __init__(self, beta: float, temperature: float, distance: str, layer: str, features: str):
        self.beta, self.temperature, self.distance, self.layer = beta, temperature, distance, layer
        self.adversarial = features == "adversarial"
        self.layers = [layer] if self.adversarial else []

    def __call__(self, model, x, y, x_adv, feats, net=None) -> torch.Tensor:
        net = model if net is None else net   # the DDP wrapper under torchrun: its forward syncs gradients
        f = feats[self.layer] if self.adversarial else net(x, [self.layer], head=False)[self.layer]
        return self.beta * snn_loss(gather_batch(f), gather_batch(y), self.temperature, self.distance)


def train_config(method: str, params: dict, seed: int) -> TrainConfig:
    """The training settings of `method` under training seed `seed`: the train section, with
    at_wide's wider attack."""
    cfg = dataclasses.replace(TrainConfig.from_params(params["train"]), seed=seed)
    if method == "at_wide":
        cfg = dataclasses.replace(cfg, wide_attack=dict(params["methods"]["at_wide"]))
    return cfg


def extra_term(method: str, params: dict, data: PreparedData, cfg: TrainConfig):
    """The loss term `method` adds to AT, or None (AT itself, or a defense whose weight is 0)."""
    p = params["methods"][method]
    if method == "askdef" and p["lam"] > 0:
        return AskDefTerm(data, cfg, p["lam"], p["tau"], p["metric"], p["layer"], p["refs_per_class"],
                          p["eps"], p["steps"], p["step_size"])
    if method == "atsnn" and p["beta"] > 0:
        return SnnTerm(p["beta"], p["temperature"], p["distance"], p["layer"], p["features"])
    return None
