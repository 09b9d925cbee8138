"""Data-parallel training under torchrun (DistributedDataParallel): launching, the process group, and
the few collective operations the training loop needs.

`train.launcher: torchrun` makes stage train@<method> start itself again under
`torchrun --standalone --nproc-per-node <train.nproc>` (one machine). For several machines, start
`torchrun --nnodes N --node-rank i --rdzv-endpoint host:port ... stages/train.py <method>` on each
yourself: a process that torchrun started (RANK in its environment) never relaunches. Without a
process group every helper here is the single-process identity, so the default path is unchanged.
"""
from __future__ import annotations

import os
import sys

import torch
import torch.distributed as dist

from askknn.shared import ParamError


def under_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def relaunch(script: str, args: list[str], nproc: int) -> None:
    """Replace this process by torchrun running `script` on `nproc` local processes (same PID, so a
    signal from DVC reaches torchrun, which passes it on)."""
    check_gpus(nproc)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", script, *args]
    os.execv(sys.executable, cmd)


def check_gpus(nproc: int) -> None:
    """One process per GPU: a process beyond the machine's GPUs would fail inside CUDA (invalid device
    ordinal). Without GPUs any number of processes trains on the CPU (gloo)."""
    gpus = torch.cuda.device_count()
    if gpus and nproc > gpus:
        raise ParamError(f"train.nproc = {nproc} processes (torchrun --nproc-per-node) but this machine has "
                         f"{gpus} GPU(s); set train.nproc to at most {gpus}, one process per GPU")


def setup() -> torch.device:
    """Join the process group torchrun describes; each process gets its local GPU (nccl) or the CPU (gloo)."""
    if torch.cuda.is_available():
        check_gpus(int(os.environ.get("LOCAL_WORLD_SIZE", 1)))
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device)
        return device
    dist.init_process_group("gloo")
    return torch.device("cpu")


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def rank_and_world() -> tuple[int, int]:
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def is_main() -> bool:
    """Rank 0 alone writes checkpoints, metrics and outputs."""
    return rank_and_world()[0] == 0


def all_sum(*tensors: torch.Tensor) -> None:
    """Sum each tensor over the ranks, in place (nothing to do in a single process)."""
    if dist.is_initialized():
        for t in tensors:
            dist.all_reduce(t)


def broadcast_object(obj):
    """Rank 0's `obj` (anything picklable) on every rank; `obj` itself in a single process."""
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class _GatherBatch(torch.autograd.Function):
    """Every rank's tensor (the same shape on every rank), concatenated in rank order. Backward: each
    rank's loss gives a gradient for the whole gathered tensor; they are summed over the ranks and
    each rank keeps its own part, the gradient of the ranks' summed losses with respect to its input."""

    @staticmethod
    def forward(ctx, t: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, t.contiguous())
        ctx.rows = len(t)
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone(memory_format=torch.contiguous_format)   # reduced in place: not autograd's buffer
        dist.all_reduce(grad)
        start = dist.get_rank() * ctx.rows
        return grad[start:start + ctx.rows]


def gather_batch(t: torch.Tensor) -> torch.Tensor:
    """The global batch of a per-rank tensor, differentiable with respect to this rank's part; `t`
    itself in a single process. The shapes must agree on all ranks, as the training loop's slices do
    (askknn.training.epoch_order)."""
    return _GatherBatch.apply(t) if dist.is_initialized() else t


def broadcast_buffers(model: torch.nn.Module) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics, which each rank updates on its
    own shard), so held-out metrics and the saved model are the same on every rank."""
    if dist.is_initialized():
        for buffer in model.buffers():
            dist.broadcast(buffer, 0)
