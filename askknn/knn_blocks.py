"""AdvKnn's deep kNN blocks (Li et al., "AdvKnn: adversarial attacks on k-nearest neighbor
classifiers with approximate gradients", arXiv 1911.06591; the ASK paper's Appendix C): one linear
head per DkNN layer on the flattened, un-normalised feature, trained with the backbone frozen so that
softmax(head) matches the layer's kNN label histogram: KL(histogram || softmax) + lambda * CE(head,
kNN majority label). Stage advknn_block trains them; the attack (askknn.attacks.advknn) ascends the
same loss through them.
"""
from __future__ import annotations

import json

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from askknn.bank import FeatureBank
from askknn.io import load_weights, save_weights
from askknn.shared import ParamError, knn_prediction


def default_lambda(layers) -> float:
    """The original's CE weight (Li et al.): 20 for one layer, 0.3 per layer for several."""
    return 20.0 if len(layers) == 1 else 0.3


class KNNBlock(nn.Module):
    """One linear head (D_l -> C) per DkNN layer; `forward` maps {layer: feature} to {layer: logits}.
    `lam` is the CE weight it was trained with: its attack must ascend the same loss."""

    def __init__(self, dims: dict[str, int], num_classes: int, lam: float):
        super().__init__()
        self.dims, self.num_classes, self.lam = dict(dims), num_classes, float(lam)
        self.heads = nn.ModuleDict({layer: nn.Linear(d, num_classes) for layer, d in self.dims.items()})

    @property
    def layers(self) -> list[str]:
        return list(self.heads)

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {layer: self.heads[layer](f) for layer, f in features.items()}

    def config(self) -> dict:
        """What `from_weights` needs besides the weights (JSON-serialisable)."""
        return {"dims": self.dims, "num_classes": self.num_classes, "lam": self.lam}

    @classmethod
    def from_weights(cls, config: dict, weights: dict[str, torch.Tensor]) -> "KNNBlock":
        block = cls(config["dims"], config["num_classes"], config["lam"])
        block.load_state_dict(weights)
        return block.eval()


def save_blocks(path, blocks: dict[str, KNNBlock]) -> None:
    """Several named blocks in one safetensors file (byte-identical for identical weights)."""
    tensors = {f"{name}.{key}": value.cpu() for name, block in blocks.items()
               for key, value in block.state_dict().items()}
    save_weights(path, tensors, {"blocks": json.dumps({name: b.config() for name, b in blocks.items()})})


def load_blocks(path) -> dict[str, KNNBlock]:
    tensors, metadata = load_weights(path)
    configs = json.loads(metadata["blocks"])
    return {name: KNNBlock.from_weights(config, {key[len(name) + 1:]: value for key, value in tensors.items()
                                                 if key.startswith(f"{name}.")})
            for name, config in configs.items()}


def knn_vote(neighbour_labels: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """From each row's neighbour labels (B, K), nearest first: the fraction (B, C) of them in each
    class, and the kNN's label, ties broken as the DkNN breaks them (askknn.shared.knn_prediction)."""
    counts = (neighbour_labels[..., None] == np.arange(num_classes)).sum(1)
    return (counts / neighbour_labels.shape[1]).astype(np.float32), knn_prediction(counts, neighbour_labels)


def knn_votes(bank: FeatureBank, layer: str, metric: str, queries, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The real kNN's label histogram (B, C) and label (B,) of queries that are not bank points."""
    return knn_vote(bank.labels[bank.search(layer, metric, queries, k)[1]], bank.num_classes)


def without_self(idx: np.ndarray) -> np.ndarray:
    """Drop each bank point i from its own k+1 neighbours idx[i] -> (N, k). If duplicates at
    distance 0 pushed i out of the list, its k+1 neighbours are all exact copies: drop the last."""
    is_self = idx == np.arange(len(idx))[:, None]
    is_self[~is_self.any(1), -1] = True
    return idx[~is_self].reshape(len(idx), -1)


def bank_knn_votes(bank: FeatureBank, layers, k: int, metric: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per layer, every bank point's kNN label histogram (N, C) and kNN label (N,), the point itself
    excluded from its neighbours."""
    bank.check(layers, k, "k")
    return {layer: knn_vote(bank.labels[without_self(bank.search(layer, metric, bank.features[layer], k + 1)[1])],
                            bank.num_classes) for layer in layers}


def block_loss(logits: dict[str, torch.Tensor], histograms: dict[str, torch.Tensor],
               labels: dict[str, torch.Tensor], ce_weight: float, kl_weight: float = 1.0) -> torch.Tensor:
    """Per example sum_l kl_weight * KL(q_l || softmax g_l) + ce_weight * CE(g_l, label): the
    block's training loss (minimised; kl_weight 1, ce_weight its lam) and the attack's objective
    (maximised)."""
    total = 0
    for layer, g in logits.items():
        log_p = F.log_softmax(g, dim=1)
        kl = F.kl_div(log_p, histograms[layer], reduction="none").sum(1)   # 0 log 0 = 0
        total = total + kl_weight * kl + ce_weight * F.nll_loss(log_p, labels[layer], reduction="none")
    return total


def check_lambda(lam: float) -> None:
    if lam < 0:
        raise ParamError(f"lam = {lam} must be non-negative")


def train_knn_block(bank: FeatureBank, layers, k: int = 5, metric: str = "cosine", epochs: int = 100,
                    lr: float = 1e-3, lam: float | None = None, batch_size: int = 256,
                    seed: int = 0, device: torch.device | str = "cpu") -> tuple[KNNBlock, list[float]]:
    """Fit the deep kNN block on the cached bank features (the backbone stays frozen: it is not
    even run). lam defaults to `default_lambda(layers)`; the heads are independent, so training
    several layers at once equals training each alone with the same lam. Runs on `device` with no
    host sync per batch (the batch order comes from the CPU generator, so every device sees the same
    batches). Returns the block (eval mode, on `device`) and the mean loss of every epoch."""
    lam = default_lambda(layers) if lam is None else lam
    check_lambda(lam)
    votes = bank_knn_votes(bank, layers, k, metric)
    hist = {layer: torch.from_numpy(h).to(device) for layer, (h, _) in votes.items()}
    labels = {layer: torch.from_numpy(label).to(device) for layer, (_, label) in votes.items()}
    feats = {layer: torch.from_numpy(bank.features[layer]).to(device) for layer in layers}
    with torch.random.fork_rng(devices=[]):   # seeded init without touching the caller's RNG
        torch.manual_seed(seed)
        block = KNNBlock({layer: f.shape[1] for layer, f in feats.items()}, bank.num_classes, lam).to(device)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(block.parameters(), lr=lr)
    history = []
    block.train()
    for _ in range(epochs):
        total = torch.zeros((), dtype=torch.float64, device=device)   # summed as loss.item() would be
        for idx in torch.randperm(len(bank.labels), generator=gen).to(device).split(batch_size):
            batch = {layer: f[idx] for layer, f in feats.items()}
            loss = block_loss(block(batch), {layer: h[idx] for layer, h in hist.items()},
                              {layer: y[idx] for layer, y in labels.items()}, lam).sum()
            opt.zero_grad()
            (loss / len(idx)).backward()
            opt.step()
            total += loss.detach().double()
        history.append(total.item() / len(bank.labels))
    return block.eval(), history


@torch.no_grad()
def knn_agreement(block: KNNBlock, bank: FeatureBank, features: dict[str, np.ndarray], layers, k: int,
                  metric: str) -> dict[str, float]:
    """Per layer, the fraction of inputs (their `features`, none of them in the bank) whose head argmax
    equals their real kNN label."""
    device = next(block.parameters()).device
    logits = block({layer: torch.as_tensor(features[layer], dtype=torch.float32, device=device) for layer in layers})
    return {layer: float((logits[layer].argmax(1).cpu().numpy() ==
                          knn_votes(bank, layer, metric, features[layer], k)[1]).mean()) for layer in layers}
