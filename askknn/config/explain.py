"""Validation with errors a user can act on: `check` validates a mapping against a section and turns
every pydantic error into one sentence that names the key, the file and the fix (the nearest valid
name of an unknown key, the description of a missing one); `describe` lists every key with its
description."""
import difflib
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from askknn.config.sections import Preset, Switches
from askknn.config.values import KEY
from askknn.shared import ParamError

RENAMED = {
    ("attacks", "step_size"): "attacks.step_size was replaced by attacks.step_fraction: the step of every "
                              "attack is step_fraction x eps (0.25 for eps/4)",
}
ALIASES = {"learning_rate": "lr", "lr_milestones": "milestones", "num_epochs": "epochs", "K": "k",
           "metric": "metrics", "layer": "layers"}


def _sections(annotation) -> list[type[BaseModel]]:
    """The Section classes inside an annotation (through Annotated, Optional, list)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _sections(arg)]


def _model_at(root: type[BaseModel], loc) -> type[BaseModel] | None:
    model = root
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        inner = _sections(field.annotation) if field else []
        if not inner:
            return None
        model = inner[0]
    return model


def _suggest(key: str, allowed: list[str]) -> str | None:
    lowered = {a.lower(): a for a in allowed}
    if key.lower() in lowered:
        return lowered[key.lower()]
    if ALIASES.get(key) in allowed:
        return ALIASES[key]
    close = difflib.get_close_matches(key.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[close[0]] if close else None


def _path(loc) -> str:
    return ".".join(str(p) for p in loc if not isinstance(p, int))


def explain(error: dict, root: type[BaseModel], where: str) -> str:
    """One pydantic error as a sentence that names the key, the file and the fix."""
    loc, kind, value = tuple(error["loc"]), error["type"], error.get("input")
    path = _path(loc)
    if kind == "askknn":
        message = error["ctx"]["text"].replace(KEY, path)
    elif kind == "extra_forbidden":
        parent, key = loc[:-1], str(loc[-1])
        model = _model_at(root, parent)
        allowed = list(model.model_fields) if model else []
        section = _path(parent)
        if tuple(map(str, loc)) in RENAMED:
            message = RENAMED[tuple(map(str, loc))]
        elif root is Switches and key in Preset.model_fields:
            message = (f"{key} is a preset section, not a switch: params.yaml holds only preset, eps and seeds. "
                       f"Change a preset value in presets/<preset>.yaml, e.g. dvc exp run -S "
                       f"'presets/<preset>.yaml:++{key}.<key>=<value>'")
        elif root is Preset and key in Switches.model_fields:
            message = f"{key} belongs in params.yaml, not in a preset"
        else:
            guess = _suggest(key, allowed)
            scope = f"{section}." if section else ""
            message = (f"{scope}{key} is not a known parameter" + (f"; did you mean {scope}{guess}?" if guess else "")
                       + f" ({'the keys of ' + section if section else 'the keys here'}: {', '.join(allowed)}; "
                       f"see askknn/schema.py)")
    elif kind == "missing":
        model = _model_at(root, loc[:-1])
        field = model.model_fields.get(str(loc[-1])) if model else None
        what = f": {field.description}" if field and field.description else ""
        section = _path(loc[:-1])
        message = f"{path} is missing{' from section ' + section if section else ''}{what}"
    elif kind in ("model_type", "model_attributes_type", "dict_type"):
        message = f"{path or 'the file'} = {value!r} must be a section of keys (a YAML mapping)"
    elif kind in ("list_type", "tuple_type"):
        model = _model_at(root, loc[:-1])
        field = model.model_fields.get(str(loc[-1])) if model else None
        message = f"{path} = {value!r} must be a list" + (f" ({field.description})" if field else "")
    else:
        message = f"{path} = {value!r}: {error['msg']}"
    return "\n".join(f"{where}: {line}" for line in message.splitlines())


def check(model: type[BaseModel], raw: Any, where: str) -> BaseModel:
    """Validate `raw` against `model`; every problem is one line of the ParamError, which names `where`."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        errors = sorted(exc.errors(include_url=False), key=lambda e: e["type"] != "extra_forbidden")
        lines = [explain(e, model, where) for e in errors]   # an unknown key first: it explains a missing one
        raise ParamError("\n".join(lines)) from None


def describe(model: type[BaseModel] = Preset, prefix: str = "") -> list[str]:
    """`key: description` for every key, nested sections first-level-indented by their path."""
    lines = []
    for name, field in model.model_fields.items():
        inner = _sections(field.annotation)
        if inner and typing.get_origin(field.annotation) is not list:
            lines += describe(inner[0], f"{prefix}{name}.")
        else:
            lines.append(f"{prefix}{name}: {field.description}")
    return lines
