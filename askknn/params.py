"""Load params.yaml plus the selected preset, and reject bad values before any work.

`params.yaml` holds the switches a user flips (`preset`, `eps`, `seeds`); `presets/base.yaml` holds
the defaults of every preset and `presets/<name>.yaml` only what differs from them. A stage calls
`load_params()` and gets the switches and the merged configuration in one dict.
"""
from __future__ import annotations

from pathlib import Path

import yaml

from askknn.shared import ParamError


def presets_dir(root: str | Path = ".") -> Path:
    return Path(root) / "presets"


BASE = "base"   # presets/base.yaml: the defaults, not a preset of its own


def available_presets(root: str | Path = ".") -> list[str]:
    return sorted(p.stem for p in presets_dir(root).glob("*.yaml") if p.stem != BASE)


def read_yaml(path: Path, empty_ok: bool = False) -> dict:
    """A YAML mapping (with `empty_ok`, a file of comments only is an empty one); a missing file, bad
    YAML or a non-mapping is a ParamError naming the file."""
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ParamError(f"{path} is missing") from None
    except yaml.YAMLError as exc:
        raise ParamError(f"{path} is not valid YAML: {exc}") from None
    if data is None and empty_ok:
        return {}
    if not isinstance(data, dict):
        raise ParamError(f"{path} must hold a mapping of keys, not {type(data).__name__}")
    return data


def merged(defaults: dict, override: dict) -> dict:
    """`override` over `defaults`: a mapping key by key, anything else (a list, a value) whole."""
    out = dict(defaults)
    for key, value in override.items():
        both = isinstance(value, dict) and isinstance(defaults.get(key), dict)
        out[key] = merged(defaults[key], value) if both else value
    return out


def preset_config(preset: str, root: str | Path = ".") -> dict:
    """The configuration of `preset`: presets/<preset>.yaml merged over presets/base.yaml."""
    folder = presets_dir(root)
    return merged(read_yaml(folder / f"{BASE}.yaml"), read_yaml(folder / f"{preset}.yaml", empty_ok=True))


def load_params(root: str | Path = ".") -> dict:
    """params.yaml's switches and its preset's configuration (over presets/base.yaml), validated
    against the schema (askknn/config/), as a plain dict."""
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
    config = schema.check(schema.Preset, preset_config(preset, root), f"presets/{preset}.yaml over presets/base.yaml")
    return {**config.model_dump(), **switches.model_dump()}
