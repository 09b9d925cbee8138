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
from askknn.knn_blocks import KNNBlock, block_loss, check_lambda, knn_votes, load_blocks
from askknn.shared import METRICS, ParamError, choice


class AdvKnnAttack(Attack):
    """AdvKnn on the DkNN layers `layers`: sign-gradient ascent of sum_l KL(q_l(x) || softmax
    g_l(x')) + lam * CE(g_l(x'), y), with q_l(x) the clean input's real K-NN histogram from the
    bank, y the true label (every attack is given it; the original ascends away from the clean
    kNN majority label, which on a misclassified image pushes towards the true class) and g_l the
    trained block's head. lam defaults to the weight the block was trained with (one block per
    lambda: the original uses 20 for one layer and 0.3 for several); the attack's lam is tuned like
    every attack's open hyper-parameters (attacks.advknn.lam_grid, stage tune), since the objective
    that trains the block need not be the one that best fools the DkNN through it."""

    def __init__(self, block: KNNBlock, bank: FeatureBank, layers, eps: float, k: int = 5, metric: str = "cosine",
                 steps: int = 20, step_size: float = 2 / 255, random_start: bool = True,
                 seed: int | None = None, lam: float | None = None):
        super().__init__(eps, steps, step_size, random_start, seed=seed)
        self.lam = block.lam if lam is None else lam
        check_lambda(self.lam)
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
        hists = {layer: knn_votes(self.bank, layer, self.metric, clean[layer], self.k) for layer in self.layers}
        return ({layer: torch.from_numpy(h).to(x.device) for layer, h in hists.items()},
                {layer: y for layer in self.layers})

    def loss(self, model, x_adv, y, context) -> torch.Tensor:
        hist, labels = context
        return block_loss(self.block(model.features(x_adv, self.layers)), hist, labels, self.lam)


def build(suite, layers, metric: str, eps: int):
    """The registry's builder: AdvKnn with the suite's model's kNN block for this metric (stage
    advknn_block), the one trained with lam_single for one layer, lam_multi for several, and its
    grid (the attack's CE weight lam)."""
    path = suite.block_path(metric)
    if not path.exists():
        raise ParamError(f"{path} is missing; run the advknn_block stage first (dvc repro advknn_block@{metric})")
    block = load_blocks(path)["single" if len(layers) == 1 else "multi"]

    def make(seed, lam):
        return AdvKnnAttack(block, suite.bank, layers, k=suite.k, metric=metric, seed=seed, lam=lam,
                            **suite.budget(eps))
    return make, [{"lam": lam} for lam in suite.cfg["advknn"]["lam_grid"]]
