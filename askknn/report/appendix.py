"""Sections: the appendix's studies of ASK-Atk (Tables 6-9, Figure 4)."""
from __future__ import annotations

import pandas as pd

from askknn import paper
from askknn.report.common import (
    plt,
    ATTACK_NAMES,
    paper_attacks,
    baselines,
    curve,
    layer_names,
    markdown,
    metrics,
    n_of,
    outcomes,
    paper_cell,
    save_figure,
    with_ci,
)
from askknn.runtime import layer_set_name


def appendix(name: str) -> tuple[dict, dict]:
    return metrics("ask_appendix", name)["cells"], outcomes("ask_appendix", name)


def table6(params, verdicts) -> str:
    names, (targeted, t_out) = layer_names(params), appendix("targeted")
    plain, p_out = metrics("attack", "ask_l2")["layer_sets"], outcomes("attack", "ask_l2")
    df = pd.DataFrame({n: {"non-targeted (Table 1)": with_ci(plain[n]), "targeted": with_ci(targeted[n]),
                           "non-targeted (paper)": paper_cell(paper.TABLE1["l2"]["ask"], n),
                           "targeted (paper)": paper_cell(paper.TABLE6_TARGETED, n)} for n in names}).T
    lines = "".join(verdicts.within(f"targeted within 3 points of non-targeted, {n}", "paper Table 6",
                                    t_out[n], p_out[n]["start_0"], 0.03) for n in names)
    return (f"## Table 6: targeted (nearest class) against non-targeted ASK-Atk, l2 (targeted: n = "
            f"{n_of(targeted)}, paired with the same first images of Table 1)\n\n" + markdown(df) + "\n" + lines)


def table7(params, verdicts) -> str:
    names, (rand, r_out) = layer_names(params), appendix("random_negatives")
    knn = metrics("attack", "ask_cosine")["layer_sets"]
    others = {a: metrics("attack", f"{a}_cosine")["layer_sets"] for a in baselines()}
    o_out = {a: outcomes("attack", f"{a}_cosine") for a in paper_attacks()}
    df = pd.DataFrame({n: {"X- by kNN search (Table 1)": with_ci(knn[n]), "X- at random": with_ci(rand[n]),
                           **{ATTACK_NAMES[a]: with_ci(c[n]) for a, c in others.items()}} for n in names}).T
    lines = "".join(verdicts.claim(f"random-X- ASK-Atk lower than {ATTACK_NAMES[a]}, {n}", "paper Table 7",
                                   r_out[n], o_out[a][n]["start_0"], "lower")
                    for n in names for a in baselines())
    return (f"## Table 7: ASK-Atk with X- drawn at random (X+ by kNN search), cosine (random X-: n = "
            f"{n_of(rand)}; the other columns: Table 1, n = {n_of(knn)}; verdicts pair the first "
            f"{n_of(rand)} images)\n\n" + markdown(df) + "\n" + lines)


def table8(params, verdicts) -> str:
    names, (cells, outs) = layer_names(params), appendix("cross_layers")
    df = pd.DataFrame({f"ASK-Atk on {a}": {f"DkNN on {d}": with_ci(cells[a][d]) for d in names} for a in names})
    ref = pd.DataFrame({f"ASK-Atk on {a}": {f"DkNN on {d}": paper_cell(paper.TABLE8[d], a) for d in names
                                            if d in paper.TABLE8} for a in names})
    single = [n for n in names if "+" not in n]
    lines = "".join(verdicts.claim(f"DkNN on {d}: attacking {d} lower than attacking {a}", "paper Table 8",
                                   outs[d][d], outs[a][d], "lower") for d in single for a in single if a != d)
    return (f"## Table 8: attacked layers against DkNN layers (gray box, n = {n_of(cells[names[0]])})\n\n"
            + markdown(df) + "\nPaper (CIFAR-10):\n\n" + markdown(ref) + "\n" + lines)


def table9(params, verdicts) -> str:
    (cells, outs), exp = appendix("k_pos_neg"), params["experiments"]
    df = pd.DataFrame({f"K+ = {kp}": {f"K- = {kn}": with_ci(cells[str(kp)][str(kn)])
                                      for kn in exp["k_neg_values"]} for kp in exp["k_pos_values"]}).T
    ref = pd.DataFrame({f"K+ = {kp}": dict(zip((f"K- = {kn}" for kn in (1, 3, 5, 7, 9)), v))
                        for kp, v in paper.TABLE9.items()}).T
    layers = layer_set_name(exp["sweep_layers"])
    smallest = str(min(exp["k_neg_values"]))
    default = str(params["attacks"]["ask"]["k_neg"])
    lines = "".join(verdicts.claim(f"K+ = {kp}: K- = {default} lower than K- = {smallest}",
                                   "paper Table 9: more negatives per class give a stronger attack",
                                   outs[str(kp)][default], outs[str(kp)][smallest], "lower")
                    for kp in exp["k_pos_values"]) if default in map(str, exp["k_neg_values"]) else ""
    return (f"## Table 9: K+ against K- ({layers}; DkNN K = K+; n = {n_of(cells[str(exp['k_pos_values'][0])])})\n\n"
            + markdown(df) + "\nPaper (CIFAR-10, conv4):\n\n" + markdown(ref) + "\n" + lines)


def figure4(params, verdicts) -> str:
    exp = params["experiments"]
    tau_k, _ = appendix("tau_k")
    attacker, _ = appendix("attacker_k")
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for tau in exp["tau_values"]:
        curve(axes[0], exp["k_values"], [tau_k[str(tau)][str(k)] for k in exp["k_values"]], f"tau = {tau}")
    for k_att in exp["k_values"]:
        curve(axes[1], exp["k_values"], [attacker[str(k_att)][str(k)] for k in exp["k_values"]],
              f"attacker K = {k_att}")
    axes[0].set(title="K of attack = K of DkNN", xlabel="K", ylabel="DkNN accuracy %")
    axes[1].set(title="gray box: attacker's K", xlabel="DkNN's K", ylabel="DkNN accuracy %")
    for ax in axes:
        ax.legend(fontsize=7)
    df = pd.DataFrame({f"attacker K = {a}": {f"DkNN K = {k}": with_ci(attacker[str(a)][str(k)])
                                             for k in exp["k_values"]} for a in exp["k_values"]})
    n = n_of(attacker[str(exp["k_values"][0])])
    return (f"## Figure 4: sensitivity of ASK-Atk to the temperature and to K (n = {n}; bands: 95% Wilson "
            f"intervals)\n\n" + save_figure(fig, "figure4")
            + "\n" + markdown(df))
