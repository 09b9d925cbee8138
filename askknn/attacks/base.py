"""The l_inf projected sign-gradient ascent shared by every attack.

An attack object holds its settings; `attack(model, x, y)` returns x' with ||x' - x||_inf <= eps
and x' in [0, 1]. Subclasses define `prepare` (work done once per clean batch, e.g. finding
references) and `loss` (per-example objective to maximise).
"""
from __future__ import annotations

import torch

from askknn.params import ParamError


class Attack:
    def __init__(self, eps: float, steps: int = 20, step_size: float = 2 / 255, random_start: bool = True,
                 train_mode: bool = False):
        if not 0 <= eps <= 1:
            raise ParamError(f"eps = {eps} must be in [0, 1] (a fraction of the pixel range)")
        if steps < 0 or step_size < 0:
            raise ParamError(f"steps = {steps} and step_size = {step_size} must be non-negative")
        self.eps, self.steps, self.step_size = eps, steps, step_size
        self.random_start, self.train_mode = random_start, train_mode

    def prepare(self, model, x: torch.Tensor, y: torch.Tensor):
        return None

    def loss(self, model, x_adv: torch.Tensor, y: torch.Tensor, context) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, model, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.eps == 0:
            return x.clone()
        was_training = model.training
        model.train(self.train_mode)
        try:
            context = self.prepare(model, x, y)
            return self.ascend(model, x, y, context)
        finally:
            model.train(was_training)

    def start(self, x: torch.Tensor) -> torch.Tensor:
        if not self.random_start:
            return x.clone()
        return (x + torch.empty_like(x).uniform_(-self.eps, self.eps)).clamp_(0, 1)

    def project(self, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return torch.min(torch.max(x_adv, x - self.eps), x + self.eps).clamp_(0, 1)

    def ascend(self, model, x: torch.Tensor, y: torch.Tensor, context) -> torch.Tensor:
        x_adv = self.start(x)
        for _ in range(self.steps):
            x_adv.requires_grad_(True)
            grad, = torch.autograd.grad(self.loss(model, x_adv, y, context).sum(), x_adv)
            x_adv = self.project(x_adv.detach() + self.step_size * grad.sign(), x)
        return x_adv.detach()
