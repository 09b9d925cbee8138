"""The committed per-image outcomes follow the robust-accuracy convention: an image counts as
robust only if it is classified correctly clean and under attack, so in every cell of every
committed outcomes file no image is robust without being correct clean."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from askknn.runtime import split_outcomes
from askknn.stats import unpack

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = [ROOT / "outcomes", *sorted(ROOT.glob("reports/*/outcomes"))]


def cells(tree: dict, path=()):
    for key, value in tree.items():
        if isinstance(value, str):
            yield path + (key,), value
        else:
            yield from cells(value, path + (key,))


def lookup(tree: dict, path: tuple) -> str:
    for key in path:
        tree = tree[key]
    return tree


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda f: str(f.relative_to(ROOT)))
def test_no_image_is_robust_unless_it_is_correct_clean(folder):
    files = sorted(folder.rglob("*.json"))
    assert files
    for file in files:
        stored = json.loads(file.read_text())
        for path, robust in cells(stored["robust"]):
            clean = lookup(stored["clean"], path)
            assert len(robust) == len(clean), (file, path)
            assert not (unpack(robust) & ~unpack(clean)).any(), (file, path)


def test_leaves_of_robust_and_clean_strings_split_into_two_trees_of_one_shape():
    tree = {"a": {"robust": "01", "clean": "11"}, "b": {"c": {"robust": "0", "clean": "1"}}}
    assert split_outcomes(tree, "robust") == {"a": "01", "b": {"c": "0"}}
    assert split_outcomes(tree, "clean") == {"a": "11", "b": {"c": "1"}}


TUNING = [ROOT / "metrics" / "tuning", *sorted(ROOT.glob("metrics/*/tuning"))]


@pytest.mark.parametrize("folder", TUNING, ids=lambda f: str(f.relative_to(ROOT)))
def test_every_committed_tuning_cell_used_at_least_300_held_out_images(folder):
    cells = [c for f in sorted(folder.glob("*.json")) for c in json.loads(f.read_text())["cells"]]
    assert cells
    assert min(c["images"] for c in cells) >= 300
