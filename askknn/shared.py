"""What every layer of the package shares: its error type, the names of metrics and layers, and the
kNN's majority rule (the attacks and training methods are listed in askknn.registry). The leaf of
the package: it imports nothing from askknn (import-linter checks it)."""
from __future__ import annotations

METRICS = ("cosine", "l2")
LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5")


def majority(k: int) -> int:
    """The fewest of a kNN's K votes that outvote any other class: SW20's fewest guides per class."""
    return (k + 1) // 2


class ParamError(ValueError):
    """A parameter value that cannot work; the message names the parameter and the fix."""


def choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ParamError(f"{name} = {value!r} is not allowed; choose one of: "
                         f"{', '.join(map(str, allowed))}")
