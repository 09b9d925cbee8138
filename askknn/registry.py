"""The one list of what exists: the attacks and the training methods, as data (in the manner of
RobustBench's model zoo and timm's registry).

An attack entry names its implementation as "module:function" and imports it only when an attack
is built, so code that only names attacks (a stage's argument choices, the report's columns) does
not load attack code. The function is a builder, `build(suite, layers, metric, eps, **options) ->
(make, grid)`: `make(seed, **hyper)` returns the attack object, `grid` lists the hyper-parameter
settings the tuner tries (empty: nothing to tune). Adding an attack: its module with a builder, one
`register_attack(...)` entry, its config section in the schema, and its name in dvc.yaml's
`attacks` list (README, "Adding an attack or a defense").
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Callable

from askknn.shared import ParamError


@dataclass(frozen=True)
class AttackEntry:
    name: str                # the key: stage names, file names, attacks.<name> in the presets
    label: str               # the report's name for it
    builder: str             # "module:function", imported on first use
    tuned: bool = False      # its builder returns a grid, tuned on held-out images (stage tune)
    images: str = "all"      # all: every evaluation image; worst_case: the first attacks.worst_case_size
    cascade: int | None = None   # its turn in Table 3's worst-case cascade (after ASK-Atk and ASK-APGD)
    paper: bool = False      # one of the paper's attacks (Table 1's paired verdicts against ASK-Atk)
    swept: bool = False      # run against the budget for Figure 1 (stage eps_sweep)
    random_starts: bool = False   # Table 1 also runs attacks.random_starts - 1 further starts on the first
    # experiments.subset_size images (the spread over starts and the per-image worst case)
    equal_passes: bool = False    # Table 1 also runs it at attacks.steps gradient passes (its own steps
    # per restart, as many restarts as fit): "stronger" then compares attacks at equal compute
    options: tuple[str, ...] = ()   # the run options it accepts (the appendix's variations)
    settings: dict = field(default_factory=dict)   # defaults of its config section (a preset's attacks.<name>
    # section overrides them); the paper's attacks keep theirs in the presets, declared in the schema

    def builder_function(self) -> Callable:
        module, _, function = self.builder.partition(":")
        return getattr(importlib.import_module(module), function)


@dataclass(frozen=True)
class MethodEntry:
    name: str                # the key: stage names, file names, methods.<name> in the presets
    label: str               # the report's name for it
    paper: bool = False      # one of the paper's training methods (its Tables 3 and 5)


ATTACKS: dict[str, AttackEntry] = {}
METHODS: dict[str, MethodEntry] = {}


def register_attack(entry: AttackEntry) -> AttackEntry:
    ATTACKS[entry.name] = entry
    return entry


def register_method(entry: MethodEntry) -> MethodEntry:
    METHODS[entry.name] = entry
    return entry


def attack(name: str) -> AttackEntry:
    if name not in ATTACKS:
        raise ParamError(f"attack = {name!r} is not registered; choose one of: {', '.join(ATTACKS)}")
    return ATTACKS[name]


def cascade() -> list[str]:
    """Table 3's worst-case cascade after ASK-Atk and ASK-APGD, in order."""
    return sorted((a.name for a in ATTACKS.values() if a.cascade is not None), key=lambda n: ATTACKS[n].cascade)


def names(where: Callable[[AttackEntry], bool] = lambda a: True) -> list[str]:
    return [a.name for a in ATTACKS.values() if where(a)]


register_attack(AttackEntry("ask", "ASK-Atk", "askknn.attacks.ask:build", tuned=True, paper=True, random_starts=True,
                            options=("k_pos", "k_neg", "target", "random_negatives", "tau")))
register_attack(AttackEntry("advknn", "AdvKnn", "askknn.attacks.advknn:build", tuned=True, cascade=3, paper=True,
                            swept=True))
register_attack(AttackEntry("dknn_atk", "DkNN-Atk", "askknn.attacks.dknn_attack:build", tuned=True, cascade=1,
                            paper=True, swept=True))
register_attack(AttackEntry("ask_apgd", "ASK-APGD", "askknn.attacks.ask_apgd:build", images="worst_case",
                            equal_passes=True))
register_attack(AttackEntry("sw20", "SW20", "askknn.attacks.sw20:build", tuned=True, images="worst_case", cascade=2))

register_method(MethodEntry("at", "AT", paper=True))
register_method(MethodEntry("at_wide", "AT (G2 budget)"))
register_method(MethodEntry("askdef", "ASK-Def", paper=True))
register_method(MethodEntry("atsnn", "AT+SNN", paper=True))
