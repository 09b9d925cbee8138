"""dvc.yaml's stages as DVC resolves them (vars, foreach, matrix, ${...}) with the project's current
params.yaml, read without DVC: what benchmarks/gpu_run.py runs where DVC is not installed, and the
outputs benchmarks/run_preset.py gathers (only this pipeline's, not files an earlier run left)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import product
from pathlib import Path

import yaml

TOKEN = re.compile(r"\$\{([^}]+)\}")


@dataclass
class Stage:
    name: str
    cmd: str
    deps: list[str]
    outs: list[str]


def lookup(context: dict, dotted: str):
    """The value at a DVC path such as `item.method` or `seeds[0]`."""
    value = context
    for part in dotted.strip().split("."):
        value = value[part.split("[")[0]]
        for index in re.findall(r"\[(\d+)\]", part):
            value = value[int(index)]
    return value


def resolve(value, context: dict):
    """`value` with ${...} replaced from `context`; a string that is one ${...} keeps its type."""
    if isinstance(value, dict):
        return {resolve(k, context): resolve(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, context) for v in value]
    if not isinstance(value, str):
        return value
    whole = TOKEN.fullmatch(value)
    if whole:
        return lookup(context, whole[1])
    return TOKEN.sub(lambda m: str(lookup(context, m[1])), value)


def paths(entries) -> list[str]:
    """The paths of a deps/outs/metrics/plots list (an entry is a path or {path: options})."""
    return [p for e in entries or [] for p in ([e] if isinstance(e, str) else e)]


def variables(spec: dict, root: Path) -> dict:
    context = {}
    for entry in spec.get("vars", []):
        context.update(yaml.safe_load((root / entry).read_text()) if isinstance(entry, str) else entry)
    return context


def instances(name: str, body: dict, context: dict):
    """(stage name, item) for every instance of a foreach or matrix stage; (name, None) otherwise."""
    if "foreach" in body:
        items = resolve(body["foreach"], context)
        pairs = items.items() if isinstance(items, dict) else ((str(i), i) for i in items)
        yield from ((f"{name}@{key}", item) for key, item in pairs)
    elif "matrix" in body:
        keys, values = zip(*resolve(body["matrix"], context).items())
        for combo in product(*values):
            yield f"{name}@{'-'.join(map(str, combo))}", dict(zip(keys, combo))
    else:
        yield name, None


def stages(root: Path = Path(".")) -> list[Stage]:
    """Every stage instance of dvc.yaml with its command, deps and outs, in dvc.yaml's order."""
    spec = yaml.safe_load((root / "dvc.yaml").read_text())
    context = variables(spec, root)
    found = []
    for name, body in spec["stages"].items():
        for stage_name, item in instances(name, body, context):
            local = {**context, "item": item}
            template = body.get("do", body)
            outs = [resolve(p, local) for key in ("outs", "metrics", "plots") for p in paths(template.get(key))]
            found.append(Stage(stage_name, resolve(template["cmd"], local),
                               [resolve(p, local) for p in paths(template.get("deps"))], outs))
    return found


def inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")
