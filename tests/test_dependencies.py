"""dvc.yaml lists, for every stage, exactly the askknn modules its script imports (transitively, the
attack modules that the registry imports lazily included where attacks are built), no stage but the
report reads a file that holds timings, and dvc.yaml's lists of methods and attacks are the
registry's."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import yaml

from askknn import registry

ROOT = Path(__file__).resolve().parents[1]
TIMINGS = ("metrics/train", "plots", "metrics/attack", "metrics/eps_sweep", "metrics/ask_appendix",
           "metrics/defense", "metrics/trained")   # epoch_seconds, seconds_per_image
BUILDERS = {entry.builder.partition(":")[0] for entry in registry.ATTACKS.values()}


def module_file(module: str) -> Path:
    path = ROOT / (module.replace(".", "/") + ".py")
    return path if path.exists() else ROOT / module.replace(".", "/") / "__init__.py"


def imported(path: Path) -> set[str]:
    """askknn modules named by the imports of one file (`from askknn.x import y` may import module x.y)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("askknn"):
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names
                    if (ROOT / node.module.replace(".", "/") / f"{a.name}.py").exists()}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("askknn")}
    if re.search(r"\.builder_function\(\)", path.read_text()) and path.name != "registry.py":
        out |= BUILDERS   # the code that builds attacks imports every registered attack's module
    return out


def closure(script: Path) -> set[str]:
    seen, todo = set(), list(imported(script))
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo += imported(module_file(module))
    files = {module_file(m).relative_to(ROOT).as_posix() for m in seen}
    return {f for f in files if not f.endswith("__init__.py")}


def listed_modules(deps) -> set[str]:
    out = set()
    for dep in deps:
        path = ROOT / dep
        if dep.startswith("askknn"):
            out |= ({p.relative_to(ROOT).as_posix() for p in path.rglob("*.py")} if path.is_dir() else {dep})
    return {f for f in out if not f.endswith("__init__.py")}


def stages():
    for name, stage in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].items():
        body = stage.get("do", stage)
        script = next(word for word in body["cmd"].split() if word.startswith("stages/"))
        yield name, ROOT / script, [d if isinstance(d, str) else next(iter(d)) for d in body["deps"]]


def test_every_stage_depends_on_exactly_the_modules_it_imports():
    for name, script, deps in stages():
        assert script.relative_to(ROOT).as_posix() in deps, name
        need, have = closure(script), listed_modules(deps)
        assert need == have, f"{name}: missing {sorted(need - have)}, not imported {sorted(have - need)}"


def test_only_the_report_reads_timings():
    for name, _, deps in stages():
        if name != "report":
            assert not [d for d in deps if d.startswith(TIMINGS)], name


def test_dvc_yaml_lists_the_registry_s_methods_and_attacks():
    lists = next(v for v in yaml.safe_load((ROOT / "dvc.yaml").read_text())["vars"] if isinstance(v, dict))
    assert lists["methods"] == list(registry.METHODS)
    assert lists["attacks"] == list(registry.ATTACKS)
    assert lists["swept"] == registry.names(lambda a: a.swept)


def test_dvc_lock_holds_only_stages_of_dvc_yaml():
    """DVC keeps the lock entries of stages removed from dvc.yaml, and re-reads and re-writes the
    whole lock after every stage it runs: a stale entry only costs time."""
    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        stages = {stage.addressing for stage in repo.index.stages}
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)   # libyaml's: the lock is 300 KB
    locked = set(yaml.load((ROOT / "dvc.lock").read_text(), Loader=loader)["stages"])
    assert locked <= stages, f"stale entries in dvc.lock: {sorted(locked - stages)}"
