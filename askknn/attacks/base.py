"""The l_inf projected sign-gradient ascent shared by every attack.

An attack object holds its settings; `attack(model, x, y)` returns x' with ||x' - x||_inf <= eps
and x' in [0, 1]. Subclasses define `prepare` (work done once per clean batch, e.g. finding
references) and `loss` (per-example objective to maximise).

Randomness: an attack built with `seed` owns a CPU generator and every random draw of the run
comes from it, so a run does not depend on what ran before it. On a GPU the random starts come from
a device generator seeded once from it: drawing them on the host and copying them took more time
than a step's loss (6 million numbers for a batch of 2,000 CIFAR-10 images: 30 ms on a 2-core CPU,
against an attack step of about 24 ms on an H200, reports/gpu_benchmark_batch2048.md). A GPU run
therefore draws other starts than a CPU run of the same seed, each as repeatable. With `seed=None`
draws come from torch's global generator of the input's device (the training loop, which reseeds it
every epoch so that a resumed run repeats an uninterrupted one).
"""
from __future__ import annotations

import torch

from askknn.shared import ParamError


class Attack:
    def __init__(self, eps: float, steps: int = 20, step_size: float = 2 / 255, random_start: bool = True,
                 train_mode: bool = False, seed: int | None = None):
        if not 0 <= eps <= 1:
            raise ParamError(f"eps = {eps} must be in [0, 1] (a fraction of the pixel range)")
        if steps < 0 or step_size < 0:
            raise ParamError(f"steps = {steps} and step_size = {step_size} must be non-negative")
        self.eps, self.steps, self.step_size = eps, steps, step_size
        self.random_start, self.train_mode = random_start, train_mode
        self.generator = None if seed is None else torch.Generator().manual_seed(seed)
        self.device_generator: torch.Generator | None = None

    def rand(self, *shape: int, device=None) -> torch.Tensor:
        """Uniform [0, 1) draws on `device`: from the run's generator on the CPU, from its device
        generator elsewhere, or without a seed from the global generator of the device."""
        if self.generator is None:
            return torch.rand(shape, device=device)
        device = torch.device(device or "cpu")
        if device.type == "cpu":
            return torch.rand(shape, generator=self.generator)
        return torch.rand(shape, generator=self.generator_on(device), device=device)

    def generator_on(self, device: torch.device) -> torch.Generator:
        """The run's generator on `device`, seeded from the CPU one at its first use there."""
        if self.device_generator is None or self.device_generator.device != device:
            seed = int(torch.randint(2**62, (), generator=self.generator))
            self.device_generator = torch.Generator(device).manual_seed(seed)
        return self.device_generator

    def randint(self, high: int, shape, low: int = 0, device=None) -> torch.Tensor:
        if self.generator is None:
            return torch.randint(low, high, tuple(shape), device=device)
        return torch.randint(low, high, tuple(shape), generator=self.generator).to(device)

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
        noise = self.rand(*x.shape, device=x.device).mul_(2 * self.eps).sub_(self.eps)
        return (x + noise).clamp_(0, 1)

    def project(self, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return torch.min(torch.max(x_adv, x - self.eps), x + self.eps).clamp_(0, 1)

    def ascend(self, model, x: torch.Tensor, y: torch.Tensor, context) -> torch.Tensor:
        return self.climb(model, x, y, context, self.start(x))

    def climb(self, model, x: torch.Tensor, y: torch.Tensor, context, x_adv: torch.Tensor) -> torch.Tensor:
        """The steps from the start x_adv. They read no value on the host, so that on CUDA
        askknn.cuda_graphs.use_cuda_graphs can replace this method by one graph's replay."""
        for _ in range(self.steps):
            x_adv.requires_grad_(True)
            grad, = torch.autograd.grad(self.loss(model, x_adv, y, context).sum(), x_adv)
            x_adv = self.project(x_adv.detach() + self.step_size * grad.sign(), x)
        return x_adv.detach()
