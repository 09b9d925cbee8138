"""Work replayed as CUDA graphs: a training step (train.cuda_graphs; askknn.training uses it on CUDA
in one process) and an attack's steps (attacks.cuda_graphs; the attack suite uses it on CUDA).

At small batches the host's kernel launches, not the arithmetic, bound an adversarial-training epoch:
on an H200 four times the batch made the epoch 3.7 times faster (reports/gpu_benchmark.md and
gpu_benchmark_batch*.md). A CUDA graph launches the few thousand kernels of a step (the PGD steps,
the training pass, the update) as one. The step's computation is unchanged; its random draws come
from the device generator, which every replay advances. An attack's step adds a few dozen small
kernels (the loss, the sign step, the projection) to the network's passes; at the 250-image batch
measured on an H200 a step of ASK-Atk cost about 2 ms more than its floor's (reports/gpu_benchmark.md),
launch time that a graph's replay does not pay.
"""
from __future__ import annotations

import contextlib
import dataclasses
from typing import Callable

import torch

Step = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def capture_cuda_graph(run: Callable[[], torch.Tensor]) -> Callable[[], torch.Tensor]:
    """`run` captured as one CUDA graph (nothing executes yet); the returned function replays it and
    returns the tensor the captured call returned, rewritten by every replay."""
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = run()

    def replay() -> torch.Tensor:
        graph.replay()
        return out
    return replay


@contextlib.contextmanager
def side_stream():
    """Steps before a capture run on a side stream, as CUDA graph capture asks of its warm-up."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        yield
    torch.cuda.current_stream().wait_stream(stream)


class GraphedStep:
    """`step(x, y) -> loss` replayed as one CUDA graph. The first WARMUP calls run eagerly (cuDNN's
    autotuning, the optimizer's momentum buffers); the graph is captured after them and again
    whenever `lr()` changes, since a graph holds the learning rate it was captured with (the step
    schedule captures once per milestone; the one-cycle rate, new every batch, is refused by the
    preset's rules). A batch of another size (an epoch's last) runs eagerly. `capture` and `warm_up`
    are replaceable so that the CPU tests can check the bookkeeping with a stand-in that runs the step
    where a graph would replay it."""
    WARMUP = 3

    def __init__(self, step: Step, lr: Callable[[], float], capture=capture_cuda_graph, warm_up=side_stream):
        self.step, self.lr, self.capture, self.warm_up = step, lr, capture, warm_up
        self.batch: int | None = None
        self.eager_steps = 0
        self.inputs: tuple[torch.Tensor, torch.Tensor] | None = None   # the graph's input buffers
        self.replay: Callable[[], torch.Tensor] | None = None
        self.captures: list[float] = []   # the learning rate of every capture

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.batch = self.batch or len(y)
        if len(y) != self.batch:
            return self.step(x, y)
        if self.eager_steps < self.WARMUP:
            self.eager_steps += 1
            with self.warm_up():
                return self.step(x, y)
        if self.inputs is None:
            self.inputs = (torch.empty_like(x), torch.empty_like(y))
        self.inputs[0].copy_(x)
        self.inputs[1].copy_(y)
        lr = self.lr()
        if self.replay is None or lr != self.captures[-1]:
            self.replay = self.capture(lambda: self.step(*self.inputs))
            self.captures.append(lr)
        return self.replay()


def graphed_or_eager(step: Step, lr: Callable[[], float], asked: bool, device: torch.device, world: int,
                     log: Callable[[str], None]) -> Step:
    """`step` as a GraphedStep where train.cuda_graphs asks for it and can take effect (CUDA, one
    process); elsewhere `step` itself (the same computation), saying through `log` why graphs are off,
    so that a preset asking for them still runs on the CPU and under torchrun."""
    if not asked:
        return step
    if device.type != "cuda" or world > 1:
        why = "on the CPU" if device.type != "cuda" else f"under torchrun ({world} processes: DDP is not captured)"
        log(f"train.cuda_graphs: ignored {why}; every training step runs eagerly")
        return step
    return GraphedStep(step, lr)


def map_tensors(fn: Callable[[torch.Tensor], object], value):
    """`value` (tensors in dicts, tuples, named tuples, lists and dataclasses, as attacks' contexts hold
    them) rebuilt with fn applied to every tensor, in a fixed order."""
    if isinstance(value, torch.Tensor):
        return fn(value)
    if isinstance(value, dict):
        return {key: map_tensors(fn, item) for key, item in value.items()}
    if isinstance(value, (tuple, list)):
        items = [map_tensors(fn, item) for item in value]
        return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)   # a NamedTuple
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(value, **{f.name: map_tensors(fn, getattr(value, f.name))
                                             for f in dataclasses.fields(value)})
    return value


def tensors_in(value) -> list[torch.Tensor]:
    found = []
    map_tensors(found.append, value)
    return found


class GraphedClimb:
    """An attack's `climb(model, x, y, context, start) -> x_adv` (askknn.attacks.base) replayed as one
    CUDA graph. The references and the random start are found eagerly for every batch; the graph's
    buffers are copies of one batch's arguments, refreshed before every replay. The first call with
    arguments of new shapes (or another model) runs eagerly, as the warm-up (cuDNN's autotuning); the
    next one captures, so a last, smaller batch just runs eagerly. The result is a copy: PGD's restarts
    keep one climb's result while the next replays. `capture` and `warm_up` are replaceable for the CPU
    tests, as GraphedStep's."""

    def __init__(self, climb, capture=capture_cuda_graph, warm_up=side_stream):
        self.climb, self.capture, self.warm_up = climb, capture, warm_up
        self.key: tuple | None = None
        self.buffers: list[torch.Tensor] = []   # the graph's input buffers, in tensors_in's order
        self.replay: Callable[[], torch.Tensor] | None = None
        self.captures = 0

    def __call__(self, model, x, y, context, start) -> torch.Tensor:
        arguments = (x, y, context, start)
        tensors = tensors_in(arguments)
        key = (id(model), *((t.shape, t.dtype, t.device) for t in tensors))
        if key != self.key:
            self.key, self.buffers, self.replay = key, [], None
            with self.warm_up():
                return self.climb(model, *arguments)
        if self.replay is None:
            copies = map_tensors(torch.clone, arguments)
            self.buffers = tensors_in(copies)
            self.replay = self.capture(lambda: self.climb(model, *copies))
            self.captures += 1
        else:
            with torch.no_grad():   # the climb marks its start buffer as requiring a gradient
                for buffer, value in zip(self.buffers, tensors):
                    buffer.copy_(value)
        return self.replay().clone()


def use_cuda_graphs(attack) -> None:
    """From now on `attack`'s steps run as GraphedClimb's replays (attacks whose own `ascend` does not
    go through `climb`, such as ASK-APGD's, run as before)."""
    attack.climb = GraphedClimb(attack.climb)
