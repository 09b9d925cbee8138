"""PGD on the cross-entropy (Madry et al. 2018): the AT generator and the DNN robustness test."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from askknn.attacks.base import Attack


class PGD(Attack):
    """x' maximises CE(f(x'), y) over the l_inf ball: random start, sign steps, projection.

    With `restarts` > 1, inputs still classified correctly are attacked again from a new random
    start and the first adversarial example found is kept.
    """

    def __init__(self, eps: float, steps: int = 10, step_size: float = 2 / 255, random_start: bool = True,
                 train_mode: bool = False, restarts: int = 1, seed: int | None = None):
        super().__init__(eps, steps, step_size, random_start, train_mode, seed)
        self.restarts = restarts

    def loss(self, model, x_adv, y, context) -> torch.Tensor:
        return F.cross_entropy(model(x_adv).float(), y, reduction="none")   # float32 under autocast too

    def ascend(self, model, x, y, context) -> torch.Tensor:
        best = super().ascend(model, x, y, context)
        for _ in range(self.restarts - 1):
            with torch.no_grad():
                correct = model(best).argmax(1) == y
            if not correct.any():
                break
            candidate = super().ascend(model, x, y, context)
            with torch.no_grad():
                fooled = correct & (model(candidate).argmax(1) != y)
            best = torch.where(fooled[:, None, None, None], candidate, best)
        return best
