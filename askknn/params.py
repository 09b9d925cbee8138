"""Load params.yaml plus the selected preset, and reject bad values before any work.

`params.yaml` holds the switches a user flips (`preset`, `eps`); `presets/<name>.yaml` holds a
complete configuration. A stage calls `load_params()` and gets both merged into one dict.
"""
from __future__ import annotations

from pathlib import Path

import yaml

from askknn.shared import ParamError


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
