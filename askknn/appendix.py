"""The paper's appendix studies of ASK-Atk on the AT model (stage ask_appendix), with tau and omega
as tune@at chose them: the tables (and their verdicts) on the first `experiments.table_size`
evaluation images, the curves on the first `experiments.subset_size`.

targeted          Table 6: targeted ASK-Atk (target = nearest class on average), l2
random_negatives  Table 7: X- drawn at random from each class (X+ by kNN search), cosine
cross_layers      Table 8: attack on one layer set, DkNN on another
tau_k             Figure 4 left: fixed temperatures, K of attack = K of DkNN
attacker_k        Figure 4 right: attacker's K against the DkNN's K
k_pos_neg         Table 9: K+ against K- (DkNN K = K+)
"""
from __future__ import annotations

from askknn.experiments import layer_sets
from askknn.runtime import layer_set_name

# Every experiment returns nested dicts whose leaves are (run result, judge name).


def over_layer_sets(suite, p, metric, **options):
    n = p["experiments"]["table_size"]
    return {layer_set_name(ls): (suite.run("ask", ls, metric, p["eps"], n=n, **options), layer_set_name(ls))
            for ls in layer_sets(p)}


def targeted(suite, p):
    return over_layer_sets(suite, p, "l2", target="nearest")


def random_negatives(suite, p):
    return over_layer_sets(suite, p, "cosine", random_negatives=True)


def cross_layers(suite, p):
    judges = {layer_set_name(ls): suite.dknn(ls, "cosine") for ls in layer_sets(p)}
    runs = {layer_set_name(ls): suite.run("ask", ls, "cosine", p["eps"], judges=judges,
                                          n=p["experiments"]["table_size"]) for ls in layer_sets(p)}
    return {attacked: {judge: (run, judge) for judge in judges} for attacked, run in runs.items()}


def tau_k(suite, p):
    exp = p["experiments"]
    layers = exp["sweep_layers"]
    return {str(tau): {str(k): (suite.run("ask", layers, "cosine", p["eps"], n=exp["subset_size"], tau=tau, k_pos=k,
                                          k_neg=k, judges={"dknn": suite.dknn(layers, "cosine", k)}), "dknn")
                       for k in exp["k_values"]} for tau in exp["tau_values"]}


def attacker_k(suite, p):
    exp = p["experiments"]
    layers, ks = exp["sweep_layers"], exp["k_values"]
    judges = {str(k): suite.dknn(layers, "cosine", k) for k in ks}
    runs = {str(k): suite.run("ask", layers, "cosine", p["eps"], n=exp["subset_size"], k_pos=k, k_neg=k,
                              judges=judges) for k in ks}
    return {attacker: {judge: (run, judge) for judge in judges} for attacker, run in runs.items()}


def k_pos_neg(suite, p):
    exp = p["experiments"]
    layers = exp["sweep_layers"]
    return {str(kp): {str(kn): (suite.run("ask", layers, "cosine", p["eps"], n=exp["table_size"], k_pos=kp,
                                          k_neg=kn, judges={"dknn": suite.dknn(layers, "cosine", kp)}), "dknn")
                      for kn in exp["k_neg_values"]} for kp in exp["k_pos_values"]}


EXPERIMENTS = {f.__name__: f for f in (targeted, random_negatives, cross_layers, tau_k, attacker_k, k_pos_neg)}


def leaves(tree, read):
    """`tree` with every (result, judge) leaf replaced by read(result, judge)."""
    if isinstance(tree, tuple):
        return read(*tree)
    return {key: leaves(value, read) for key, value in tree.items()}
