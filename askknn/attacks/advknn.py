"""AdvKnn (Li et al., "AdvKnn: adversarial attacks on k-nearest neighbor classifiers with
approximate gradients", arXiv 1911.06591), as the ASK paper runs it (Wang et al., Appendix C).

A "deep kNN block" (askknn.knn_blocks, stage advknn_block) approximates the DkNN with one linear
head per layer, trained to match the layer's kNN label histogram. The attack is PGD through the
block, ascending the same loss against the clean input's real kNN histogram and the true label.
Success is judged by the real DkNN only.
"""
from __future__ import annotations


import torch

from askknn.attacks.base import Attack
from askknn.bank import FeatureBank
from askknn.knn_blocks import KNNBlock, block_loss, knn_votes, load_blocks
from askknn.shared import METRICS, ParamError, choice


class AdvKnnAttack(Attack):
    """AdvKnn on the DkNN layers `layers`: sign-gradient ascent of sum_l (1 - ce_share) *
    KL(q_l(x) || softmax g_l(x')) + ce_share * CE(g_l(x'), y), with q_l(x) the clean input's real
    K-NN histogram from the bank, y the true label (every attack is given it; the original ascends
    away from the clean kNN majority label, which on a misclassified image pushes towards the true
    class) and g_l the trained block's head. The original's weighting, KL + lam * CE, is ce_share =
    lam / (1 + lam) up to a positive factor, which sign steps ignore; written as a share, both pure
    objectives lie on the grid (0: the KL alone, 1: the CE alone). ce_share defaults to the share
    of the lam the block was trained with (one block per lam: the original uses 20 for one layer
    and 0.3 for several); the attack's share is tuned like every attack's open hyper-parameters
    (attacks.advknn.ce_share_grid, stage tune), since the objective that trains the block need not
    be the one that best fools the DkNN through it."""

    def __init__(self, block: KNNBlock, bank: FeatureBank, layers, eps: float, k: int = 5, metric: str = "cosine",
                 steps: int = 20, step_size: float = 2 / 255, random_start: bool = True,
                 seed: int | None = None, ce_share: float | None = None):
        super().__init__(eps, steps, step_size, random_start, seed=seed)
        self.ce_share = block.lam / (1 + block.lam) if ce_share is None else ce_share
        if not 0 <= self.ce_share <= 1:
            raise ParamError(f"ce_share = {ce_share} must lie in [0, 1] (0: the KL term alone, 1: the CE term alone)")
        if not layers:
            raise ParamError("layers is empty; AdvKnn needs at least one layer")
        choice("metric", metric, METRICS)
        bank.check(layers, k, "k")
        missing = [layer for layer in layers if layer not in block.heads]
        if missing:
            raise ParamError(f"layers lists {', '.join(missing)}, which the kNN block has no head for "
                             f"(it has: {', '.join(block.layers)}); retrain the block on these layers")
        self.block, self.bank, self.layers, self.k, self.metric = block, bank, list(layers), k, metric

    @torch.no_grad()
    def prepare(self, model, x, y):
        self.block.to(x.device).eval()
        clean = model.features(x, self.layers)
        hists = {layer: knn_votes(self.bank, layer, self.metric, clean[layer], self.k)[0] for layer in self.layers}
        return ({layer: torch.from_numpy(h).to(x.device) for layer, h in hists.items()},
                {layer: y for layer in self.layers})

    def loss(self, model, x_adv, y, context) -> torch.Tensor:
        hist, labels = context
        return block_loss(self.block(model.features(x_adv, self.layers)), hist, labels,
                          ce_weight=self.ce_share, kl_weight=1 - self.ce_share)


def build(suite, layers, metric: str, eps: int):
    """The registry's builder: AdvKnn with the suite's model's kNN block for this metric (stage
    advknn_block), the one trained with lam_single for one layer, lam_multi for several, and its
    grid (the CE term's share of the attack's objective)."""
    path = suite.block_path(metric)
    if not path.exists():
        raise ParamError(f"{path} is missing; run the advknn_block stage first (dvc repro advknn_block@{metric})")
    block = load_blocks(path)["single" if len(layers) == 1 else "multi"]

    def make(seed, ce_share):
        return AdvKnnAttack(block, suite.bank, layers, k=suite.k, metric=metric, seed=seed, ce_share=ce_share,
                            **suite.budget(eps))
    return make, [{"ce_share": share} for share in suite.cfg["advknn"]["ce_share_grid"]]
