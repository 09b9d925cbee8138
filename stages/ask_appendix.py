"""Stage ask_appendix@<experiment>: the paper's appendix studies of ASK-Atk on the AT model, with
tau and omega fixed to what Table 1's runs (stage attack@ask-<metric>) chose on their first batch.

targeted          Table 6: targeted ASK-Atk (target = nearest class on average), l2
random_negatives  Table 7: X- drawn at random from each class, cosine
cross_layers      Table 8: attack on one layer set, DkNN on another
tau_k             Figure 4 left: fixed temperatures, K of attack = K of DkNN
attacker_k        Figure 4 right: attacker's K against the DkNN's K
k_pos_neg         Table 9: K+ against K- (DkNN K = K+)
"""
from askknn.experiments import AttackSuite, layer_sets, summary
from askknn.io import write_json
from askknn.params import load_params
from askknn.runtime import METRICS, layer_set_name, stage_arguments


def targeted(suite, p):
    return {layer_set_name(ls): summary(suite.run("ask", ls, "l2", p["eps"], target="nearest"), layer_set_name(ls))
            for ls in layer_sets(p)}


def random_negatives(suite, p):
    return {layer_set_name(ls): summary(suite.run("ask", ls, "cosine", p["eps"], random_negatives=True),
                                        layer_set_name(ls)) for ls in layer_sets(p)}


def cross_layers(suite, p):
    judges = {layer_set_name(ls): suite.dknn(ls, "cosine") for ls in layer_sets(p)}
    cells = {}
    for ls in layer_sets(p):
        result = suite.run("ask", ls, "cosine", p["eps"], judges=judges)
        cells[layer_set_name(ls)] = {judge: summary(result, judge) for judge in judges}
    return cells  # cells[attacked layers][DkNN layers]


def tau_k(suite, p):
    layers, exp = p["experiments"]["sweep_layers"], p["experiments"]
    return {str(tau): {str(k): summary(suite.run("ask", layers, "cosine", p["eps"], tau=tau, k_pos=k, k_neg=k,
                                                 judges={"dknn": suite.dknn(layers, "cosine", k)}), "dknn")
                       for k in exp["k_values"]} for tau in exp["tau_values"]}


def attacker_k(suite, p):
    layers, ks = p["experiments"]["sweep_layers"], p["experiments"]["k_values"]
    judges = {str(k): suite.dknn(layers, "cosine", k) for k in ks}
    cells = {}
    for k in ks:
        result = suite.run("ask", layers, "cosine", p["eps"], k_pos=k, k_neg=k, judges=judges)
        cells[str(k)] = {judge: summary(result, judge) for judge in judges}
    return cells  # cells[attacker K][DkNN K]


def k_pos_neg(suite, p):
    layers, exp = p["experiments"]["sweep_layers"], p["experiments"]
    return {str(kp): {str(kn): summary(suite.run("ask", layers, "cosine", p["eps"], k_pos=kp, k_neg=kn,
                                                 judges={"dknn": suite.dknn(layers, "cosine", kp)}), "dknn")
                      for kn in exp["k_neg_values"]} for kp in exp["k_pos_values"]}


EXPERIMENTS = {f.__name__: f for f in (targeted, random_negatives, cross_layers, tau_k, attacker_k, k_pos_neg)}


def main() -> None:
    name, = stage_arguments(__doc__, "experiment", choices={"experiment": sorted(EXPERIMENTS)})
    params = load_params()
    suite = AttackSuite(params, "at")
    for metric in ("cosine", "l2"):   # tau and omega as tuned on Table 1's first batch, then fixed
        suite.reuse_tuning("ask", metric, METRICS / "attack" / f"ask_{metric}.json")
    cells = EXPERIMENTS[name](suite, params)
    write_json(METRICS / "ask_appendix" / f"{name}.json", {"experiment": name, "eps": params["eps"], "cells": cells})


if __name__ == "__main__":
    main()
