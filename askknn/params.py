"""Load params.yaml plus the selected preset, and reject bad values before any work.

`params.yaml` holds the switches a user flips (`preset`, `eps`); `presets/<name>.yaml` holds a
complete configuration. A stage calls `load_params()` and gets both merged into one dict.
"""
from __future__ import annotations

from pathlib import Path

import yaml

METRICS = ("cosine", "l2")
LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5")
METHODS = ("at", "at_wide", "askdef", "atsnn")   # here, not in defenses: stages that only
# name a method must not depend on the training code


class ParamError(ValueError):
    """A parameter value that cannot work; the message names the parameter and the fix."""


def presets_dir(root: str | Path = ".") -> Path:
    return Path(root) / "presets"


def available_presets(root: str | Path = ".") -> list[str]:
    return sorted(p.stem for p in presets_dir(root).glob("*.yaml"))


def read_yaml(path: Path) -> dict:
    """A YAML mapping; a missing file, bad YAML or a non-mapping is a ParamError naming the file."""
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ParamError(f"{path} is missing") from None
    except yaml.YAMLError as exc:
        raise ParamError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ParamError(f"{path} must hold a mapping of keys, not {type(data).__name__}")
    return data


def load_params(root: str | Path = ".") -> dict:
    """params.yaml merged with its preset, validated against askknn/schema.py, as a plain dict."""
    import difflib

    from askknn import schema

    root = Path(root)
    top = read_yaml(root / "params.yaml")
    preset = top.get("preset")
    allowed = available_presets(root)
    if preset not in allowed:
        close = difflib.get_close_matches(str(preset), allowed, n=1)
        raise ParamError(f"preset = {preset!r} is unknown; allowed: {', '.join(allowed)} "
                         f"(files in {presets_dir(root)}/)" + (f"; did you mean {close[0]}?" if close else ""))
    switches = schema.check(schema.Switches, top, "params.yaml")
    config = schema.check(schema.Preset, read_yaml(presets_dir(root) / f"{preset}.yaml"), f"presets/{preset}.yaml")
    return {**config.model_dump(), **switches.model_dump()}


def choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ParamError(f"{name} = {value!r} is not allowed; choose one of: "
                         f"{', '.join(map(str, allowed))}")


def in_range(name: str, value, low, high, integer: bool = False) -> None:
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not low <= value <= high:
        what = "an integer" if integer else "a number"
        raise ParamError(f"{name} = {value!r} must be {what} in [{low}, {high}]")


def layers_of(name: str, layers, allowed=LAYERS) -> None:
    if not layers:
        raise ParamError(f"{name} is empty; list one or more of: {', '.join(allowed)}")
    for layer in layers:
        if layer not in allowed:
            raise ParamError(f"{name} lists {layer!r}, a layer the model does not have; "
                             f"the model's layers are: {', '.join(allowed)}")


def eps_value(name: str, value) -> None:
    in_range(name, value, 0, 255, integer=True)


def validate(p: dict) -> None:
    """Check a merged params dict (switches plus preset sections) against askknn/schema.py."""
    from askknn import schema

    schema.check(schema.Switches, {k: v for k, v in p.items() if k in schema.Switches.model_fields}, "params.yaml")
    schema.check(schema.Preset, {k: v for k, v in p.items() if k not in schema.Switches.model_fields},
                 f"presets/{p.get('preset')}.yaml")
