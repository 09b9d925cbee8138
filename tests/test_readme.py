"""README.md's `dvc exp run -S` examples apply as written: each to a copy of the file it names
(params.yaml when it names none), through DVC's own override parser."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from dvc.utils.hydra import apply_overrides

ROOT = Path(__file__).resolve().parents[1]
PLACEHOLDERS = {"<name>": "fashion_mnist", "...": "1", "<n>": "8"}


def readme_overrides() -> list[str]:
    found = re.findall(r"-S '([^']+)'|-S ([^\s`'\"]+)", (ROOT / "README.md").read_text())
    overrides = [quoted or plain for quoted, plain in found]
    for placeholder, value in PLACEHOLDERS.items():
        overrides = [o.replace(placeholder, value) for o in overrides]
    return [o for o in overrides if "=" in o]   # `-S KEY=VALUE` in prose is a pattern, not an example


def test_the_readme_shows_preset_overrides():
    assert any(o.startswith("presets/") for o in readme_overrides())


@pytest.mark.parametrize("override", sorted(set(readme_overrides())))
def test_each_readme_override_applies(override, tmp_path):
    target, expression = override.split(":", 1) if re.match(r"presets/\S+\.yaml:", override) else \
        ("params.yaml", override)
    copy = tmp_path / Path(target).name
    shutil.copyfile(ROOT / target, copy)
    apply_overrides(str(copy), [expression])   # DVC's InvalidArgumentError names a key it cannot set
