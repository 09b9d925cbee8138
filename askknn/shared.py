"""What every layer of the package shares: its error type and the names of metrics and layers (the
attacks and training methods are listed in askknn.registry). The leaf of the package: it imports
nothing from askknn (import-linter checks it)."""
from __future__ import annotations

METRICS = ("cosine", "l2")
LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5")


class ParamError(ValueError):
    """A parameter value that cannot work; the message names the parameter and the fix."""


def choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ParamError(f"{name} = {value!r} is not allowed; choose one of: "
                         f"{', '.join(map(str, allowed))}")
