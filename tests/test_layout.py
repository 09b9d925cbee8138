"""The package's shape: its layers point down (import-linter's contract in pyproject.toml: no import
circle, the leaf `askknn.shared` imports nothing from the package), ruff passes (with its complexity
limits), and modules, functions and the attack suite stay small."""
from __future__ import annotations

import ast
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


MODULE_LINES, FUNCTION_LINES, SUITE_LINES = 300, 50, 100


def sizes():
    """(file, kind, name, lines) of every module and every function of the package and the stages."""
    for path in sorted([*(ROOT / "askknn").rglob("*.py"), *(ROOT / "stages").glob("*.py")]):
        text = path.read_text()
        yield path.relative_to(ROOT).as_posix(), "module", path.stem, len(text.splitlines())
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                kind = "class" if isinstance(node, ast.ClassDef) else "function"
                yield path.relative_to(ROOT).as_posix(), kind, node.name, node.end_lineno - node.lineno + 1


def test_modules_functions_and_the_suite_stay_small():
    found = list(sizes())
    assert not [f for f in found if f[1] == "module" and f[3] > MODULE_LINES]
    assert not [f for f in found if f[1] == "function" and f[3] > FUNCTION_LINES]
    suite = next(f for f in found if f[2] == "AttackSuite")
    assert suite[3] < SUITE_LINES, suite
