"""A worked extension, as README's "Adding an attack or a defense" describes it: a new attack written
in this file (one module-level class and its builder), one registry entry carrying its settings, and
its name in dvc.yaml's `attacks` list; no preset and no other file changes. The whole `tiny`
pipeline then tunes it, runs it as a Table 1 column, puts it in the worst-case cascade and reports it."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from askknn import registry
from askknn.attacks.base import Attack
from askknn.registry import AttackEntry

ROOT = Path(__file__).resolve().parents[1]


class FeatureShiftAttack(Attack):
    """Moves the features of the attacked layers away from the clean input's: ascends
    sum_l (1 - cos(f_l(x'), f_l(x)))^power with sign steps in the l_inf ball (a label-free
    feature-space attack, here only to show how an attack joins the project)."""

    def __init__(self, layers, eps: float, power: float = 1.0, **kw):
        super().__init__(eps, **kw)
        self.layers, self.power = list(layers), power

    def prepare(self, model, x, y):
        with torch.no_grad():
            return model.features(x, self.layers)

    def loss(self, model, x_adv, y, clean):
        features = model.features(x_adv, self.layers)
        return sum((1 - F.cosine_similarity(features[layer].flatten(1), clean[layer].flatten(1))) ** self.power
                   for layer in self.layers)


ENTRY = AttackEntry("feature_shift", "Feature shift", "test_extension:build", tuned=True, cascade=4,
                    settings={"powers": [1.0, 2.0]})


def build(suite, layers, metric: str, eps: int):
    """The registry's builder: the attack and its tuning grid (the power), from its settings (the
    entry's defaults, overridden by a preset's attacks.feature_shift section if there is one)."""
    settings = {**ENTRY.settings, **suite.cfg.get(ENTRY.name, {})}

    def make(seed, power):
        return FeatureShiftAttack(layers, power=power, seed=seed, **suite.budget(eps))
    return make, [{"power": p} for p in settings["powers"]]


@pytest.mark.slow
def test_a_new_attack_is_tuned_run_cascaded_and_reported(tmp_path, monkeypatch, tracked_copy):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import gpu_run

    monkeypatch.setitem(registry.ATTACKS, ENTRY.name, ENTRY)
    copy = tracked_copy
    dvc_yaml = copy / "dvc.yaml"
    listed = "attacks: [ask, advknn, dknn_atk, ask_apgd, sw20]"
    assert listed in dvc_yaml.read_text()
    dvc_yaml.write_text(dvc_yaml.read_text().replace(listed, listed[:-1] + ", feature_shift]"))
    monkeypatch.chdir(copy)
    # every stage in this process (so the entry above is registered for them), one training seed
    assert gpu_run.run("tiny", {"eps": "24", "seeds": "[0]"}, tmp_path / "out" / "tiny.tar.gz", None) == 0

    tuned = json.loads((copy / "metrics/tuning/at.json").read_text())["cells"]
    assert {c["attack"] for c in tuned} >= {"feature_shift"}
    assert all(c["images"] > 0 for c in tuned if c["attack"] == "feature_shift")
    cell = json.loads((copy / "metrics/attack/feature_shift_cosine.json").read_text())["layer_sets"]["conv4"]
    assert cell["n"] == 100 and 0 <= cell["accuracy"] <= cell["clean"]["accuracy"]
    cascade = json.loads((copy / "metrics/defense/askdef.json").read_text())["worst_case"]["conv4"]["cascade"]
    assert set(cascade) == {"dknn_atk", "sw20", "advknn", "feature_shift"}   # the registry's cascade, extended
    table1 = (copy / "reports/results.md").read_text().split("## Table 1")[1].split("\n## ")[0]
    assert "| Feature shift " in table1 and "worst case, all 6 attacks" in table1
