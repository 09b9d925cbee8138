"""Training checkpoints (model, optimizer, history), written by rank 0 after each epoch and read back
to resume. A checkpoint records the world size and the global batch it was written with, and one
written with others is refused (CheckpointMismatch); one that cannot be read never blocks training:
it is set aside and the run starts over."""
from __future__ import annotations

import copy
import os
import warnings
from pathlib import Path

from askknn.distributed import broadcast_object, is_main
from askknn.io import load_torch, save_torch
from askknn.shared import ParamError


class CheckpointMismatch(ParamError):
    """A checkpoint written by another number of processes or with another global batch (a
    ParamError, so a stage ends with its one-line message and the fix)."""


def read_checkpoint(path: Path):
    """What rank 0 finds at `path`: the checkpoint, None if there is none, or the exception reading it
    raised. Only rank 0 reads, as only rank 0 writes: on several machines only its node has the file."""
    if not is_main() or not path.exists():
        return None
    try:
        return load_torch(path)
    except Exception as exc:   # sent to every rank, which all start over alike
        return exc


def check_layout(path: Path, state: dict, world: int, global_batch: int) -> None:
    """Refuse a checkpoint written by another number of processes or with another global batch: the
    run would not continue as it began (other batches, learning rate and random streams)."""
    # A checkpoint from before these keys were saved is taken as one process's at train.batch_size
    # (which its name fixes), so it still resumes in one process.
    run = {"world size": world, "global batch": global_batch}
    saved = {"world size": state.get("world_size", 1), "global batch": state.get("global_batch", global_batch // world)}
    differ = [f"{k} {saved[k]} (this run: {run[k]})" for k in run if saved[k] != run[k]]
    if differ:
        raise CheckpointMismatch(f"checkpoint {path} was written with {', '.join(differ)}; resume with the "
                                 f"same number of processes (torchrun --nproc-per-node, train.nproc) and "
                                 f"train.batch_size, or delete the checkpoint to start over")


def load_checkpoint(path: Path, model, optimizer, world: int, global_batch: int) -> tuple[int, list]:
    """(epochs done, history) from `path`, or (0, []) to start over. Rank 0 reads the checkpoint and
    every rank loads rank 0's copy. One written by another number of processes (`world`) or with
    another `global_batch` raises CheckpointMismatch, on every rank alike. A checkpoint that cannot
    be read (truncated, refused by weights_only loading, or of another shape) never blocks training: it
    is renamed aside to `<name>.unreadable`, a warning names it, and the model and optimizer keep their
    fresh state, so the run is the same as one that never had a checkpoint."""
    path = Path(path)
    state = broadcast_object(read_checkpoint(path))
    if state is None:
        return 0, []
    if isinstance(state, dict):
        check_layout(path, state, world, global_batch)
    fresh_model, fresh_optimizer = copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict())
    try:
        if isinstance(state, Exception):
            raise state
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        epoch, history = int(state["epoch"]), list(state["history"])
    except Exception as exc:   # UnreadableFile, missing keys, mismatched shapes: all mean "start over"
        model.load_state_dict(fresh_model)
        optimizer.load_state_dict(fresh_optimizer)
        aside = path.with_name(path.name + ".unreadable")
        if is_main():   # the one rank that writes checkpoints also sets them aside
            os.replace(path, aside)
        warnings.warn(f"checkpoint {path} cannot be resumed ({exc}); moved it to {aside} and training "
                      f"starts over from epoch 0", RuntimeWarning, stacklevel=2)
        return 0, []
    return epoch, history


def save_checkpoint(path: Path, model, optimizer, epoch: int, history: list, world: int, global_batch: int) -> None:
    """The state after `epoch` epochs (written atomically by askknn.io); rank 0 alone calls it."""
    save_torch(path, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                      "epoch": epoch, "history": history, "world_size": world,
                      "global_batch": global_batch})
