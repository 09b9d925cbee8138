"""What every layer of the package shares: its error type and the names of metrics, layers and
methods. The leaf of the package: it imports nothing from askknn (import-linter checks it)."""
from __future__ import annotations

METRICS = ("cosine", "l2")
LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5")
METHODS = ("at", "at_wide", "askdef", "atsnn")   # here, not in defenses: stages that only
# name a method must not depend on the training code


class ParamError(ValueError):
    """A parameter value that cannot work; the message names the parameter and the fix."""


def choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ParamError(f"{name} = {value!r} is not allowed; choose one of: "
                         f"{', '.join(map(str, allowed))}")
