"""What every layer of the package shares: its error type, the names of metrics and layers, and the
kNN's majority and tie rules (the attacks and training methods are listed in askknn.registry). The
leaf of the package: it imports nothing from askknn (import-linter checks it)."""
from __future__ import annotations

import numpy as np

METRICS = ("cosine", "l2")
LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5")


def majority(k: int) -> int:
    """The fewest of a kNN's K votes that outvote any other class: SW20's fewest guides per class."""
    return (k + 1) // 2


def knn_prediction(counts: np.ndarray, by_rank: np.ndarray) -> np.ndarray:
    """A kNN's label per row from its vote counts (B, C) and its neighbours' labels nearest first
    (B, R): the class with the most votes, a tie going to the class of the nearest neighbour among
    the tied classes (a rule that favours no class index; the DkNN and AdvKnn's blocks share it)."""
    tied = counts == counts.max(axis=1, keepdims=True)
    first = np.take_along_axis(tied, by_rank, axis=1).argmax(axis=1)   # a tied class always occurs
    return by_rank[np.arange(len(counts)), first]


class ParamError(ValueError):
    """A parameter value that cannot work; the message names the parameter and the fix."""


def choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ParamError(f"{name} = {value!r} is not allowed; choose one of: "
                         f"{', '.join(map(str, allowed))}")
