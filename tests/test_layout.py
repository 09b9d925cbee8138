"""The package's shape: its layers point down (import-linter's contract in pyproject.toml: no import
circle, the leaf `askknn.shared` imports nothing from the package) and ruff passes."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def test_layers_point_down():
    result = subprocess.run([str(BIN / "lint-imports")], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_the_leaf_imports_nothing_from_the_package():
    assert "askknn" not in (ROOT / "askknn" / "shared.py").read_text().split('"""')[-1]


def test_ruff_passes():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "askknn", "stages", "benchmarks", "tests"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
