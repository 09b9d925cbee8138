"""What the evaluation stages run on an attack suite, one function per stage: Table 1's cells of one
attack (stage attack), Tables 3 and 5 of one trained model (evaluate_trained), and the stronger
attacks and curves of a method's first-seed model (evaluate_defense). Each returns the small
summary for metrics/ and the per-image outcomes for outcomes/."""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np

from askknn.experiments import AttackSuite, layer_sets, pgd_outcomes, worst_case
from askknn.io import read_json
from askknn.records import cell, outcome, paired
from askknn.registry import ATTACKS
from askknn.runtime import OUTCOMES, layer_set_name, model_name
from askknn.stats import proportion, unpack


def attack_cells(suite: AttackSuite, attack: str, metric: str) -> tuple[dict, dict]:
    """Table 1: the AT model's DkNN under `attack` at every layer set, on every evaluation image (the
    first attacks.worst_case_size for an attack registered with images = worst_case). An attack
    registered with random_starts also runs attacks.random_starts - 1 further starts on the first
    experiments.subset_size images: the cell is the first start; the spread over starts and the
    per-image worst case are kept beside it. One registered with equal_passes also runs at
    attacks.steps gradient passes (`equal_passes`)."""
    params, eps, entry = suite.params, suite.params["eps"], ATTACKS[attack]
    starts = params["attacks"]["random_starts"] if entry.random_starts else 1
    n = params["experiments"]["subset_size"]
    subset = params["attacks"]["worst_case_size"] if entry.images == "worst_case" else None
    cells, outcomes = {}, {}
    for layers in layer_sets(params):
        name = layer_set_name(layers)
        first = suite.run(attack, layers, metric, eps, n=subset)
        cells[name], outcomes[name] = cell(first, name), {"start_0": outcome(first, name)}
        if starts > 1:
            runs = [first["outcomes"][name]["adversarial"][:n]]
            runs += [suite.run(attack, layers, metric, eps, n=n, start=s)["outcomes"][name]["adversarial"]
                     for s in range(1, starts)]
            worst = sum(runs) == len(runs)   # correct under every start
            cells[name]["starts"] = [proportion(r) for r in runs]
            cells[name]["worst_case"] = proportion(worst)
            outcomes[name]["worst_case"] = paired(worst, first["outcomes"][name]["clean"][:n])
    if entry.equal_passes:
        equal_passes(suite, attack, metric, cells, outcomes)
    return cells, outcomes


def equal_passes(suite: AttackSuite, attack: str, metric: str, cells: dict, outcomes: dict) -> None:
    """A restarted attack limited to ASK-Atk's gradient passes (attacks.steps // <attack>.steps
    restarts), on the same images, beside the full run: so that "stronger" is not only more compute."""
    cfg = suite.params["attacks"]
    runs = max(1, cfg["steps"] // cfg[attack]["steps"])
    limited = copy.copy(suite)   # shares the model, bank and caches; only the restarts differ
    limited.cfg = {**cfg, attack: {**cfg[attack], "restarts": runs}}
    for layers in layer_sets(suite.params):
        name = layer_set_name(layers)
        run = limited.run(attack, layers, metric, suite.params["eps"], n=cfg["worst_case_size"])
        cells[name]["equal_passes"] = {**cell(run, name), "passes": runs * cfg[attack]["steps"]}
        outcomes[name]["equal_passes"] = outcome(run, name)


def trained_cells(suite: AttackSuite) -> tuple[dict, dict]:
    """Tables 3 and 5 of one trained model: the DkNN under ASK-Atk (cosine) at every layer set and the
    DNN under PGD at every experiments.pgd_eps, on every evaluation image."""
    eps = suite.params["eps"]
    runs = {layer_set_name(ls): suite.run("ask", ls, "cosine", eps) for ls in layer_sets(suite.params)}
    pgd = {str(e): pgd_outcomes(suite, e) for e in suite.params["experiments"]["pgd_eps"]}
    summary = {"ask": {name: cell(r, name) for name, r in runs.items()},
               "pgd": {e: proportion(ok["robust"]) for e, ok in pgd.items()}}
    outcomes = {"ask": {name: outcome(r, name) for name, r in runs.items()},
                "pgd": {e: paired(ok["robust"], ok["clean"]) for e, ok in pgd.items()}}
    return summary, outcomes


def table3_ask_outcomes(root, method: str, seed: int) -> dict | None:
    """The worst case's first attack on a model: per layer set, the packed {robust, clean} outcomes
    of its Table 3 ASK-Atk run (evaluate_trained's file under the project `root`); None for the AT
    model, whose stronger attacks are Table 1's."""
    if method == "at":
        return None
    trained = read_json(Path(root) / OUTCOMES / "trained" / f"{model_name(method, seed)}.json")
    return {key: {part: trained[part]["ask"][key] for part in ("robust", "clean")} for key in trained["robust"]["ask"]}


def defense_cells(suite: AttackSuite, ask: dict | None) -> tuple[dict, dict]:
    """A method's first-seed model against the budget (Figure 1) and K (Figure 5) on the first
    experiments.subset_size images; with `ask` (per layer set, the packed {robust, clean} outcomes of
    its Table 3 ASK-Atk run), also ASK-APGD and the worst-case cascade on the first
    attacks.worst_case_size images (None for the AT model, whose stronger attacks are Table 1's)."""
    exp, eps, n = suite.params["experiments"], suite.params["eps"], suite.params["attacks"]["worst_case_size"]
    layers, name = exp["sweep_layers"], layer_set_name(exp["sweep_layers"])
    runs = {"eps_curve": {str(e): (suite.run("ask", layers, "cosine", e, n=exp["subset_size"]), name)
                          for e in exp["eps_sweep"]},
            "k_curve": {str(k): (suite.run("ask", layers, "cosine", eps, n=exp["subset_size"], k_pos=k, k_neg=k,
                                           judges={name: suite.dknn(layers, "cosine", k)}), name)
                        for k in exp["k_values"]}}
    if ask is not None:
        runs["ask_apgd"] = {layer_set_name(ls): (suite.run("ask_apgd", ls, "cosine", eps, n=n), layer_set_name(ls))
                            for ls in layer_sets(suite.params)}
    summary = {part: {key: cell(*run) for key, run in group.items()} for part, group in runs.items()}
    outcomes = {part: {key: outcome(*run) for key, run in group.items()} for part, group in runs.items()}
    if ask is not None:
        summary["worst_case"], outcomes["worst_case"] = worst_cases(suite, ask, outcomes["ask_apgd"], n)
    return summary, outcomes


def worst_cases(suite: AttackSuite, ask: dict, apgd: dict, n: int) -> tuple[dict, dict]:
    """Per layer set, the worst case over every attack on the first n images: robust only if ASK-Atk
    and ASK-APGD failed and then every attack of the registry's cascade fails in turn."""
    summary, packed = {}, {}
    for ls in layer_sets(suite.params):
        name = layer_set_name(ls)
        robust = unpack(ask[name]["robust"])[:n] & unpack(apgd[name]["robust"])
        result = worst_case(suite, ls, "cosine", suite.params["eps"], np.asarray(robust))
        summary[name] = {**proportion(result["robust"]), "cascade": result["attacks"]}
        packed[name] = paired(result["robust"], unpack(ask[name]["clean"])[:n])
    return summary, packed
