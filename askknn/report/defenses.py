"""Sections: the training methods (Tables 3 and 5 over training seeds, the stronger attacks,
Figures 1 right and 5)."""
from __future__ import annotations

import pandas as pd

from askknn import paper, registry
from askknn.report.common import (
    plt,
    ATTACK_NAMES,
    METHOD_NAMES,
    suite,
    curve,
    layer_names,
    listing,
    markdown,
    metrics,
    n_of,
    outcomes,
    paper_cell,
    per_seed_table,
    save_figure,
    save_points,
    trained_runs,
    table1_worst_case,
    with_ci,
)
from askknn.runtime import layer_set_name, model_name
from askknn.stats import pack, proportion, unpack

DEFENSE_CLAIMS = [  # (a, b, claim, what is checked)
    ("askdef", "at", "paper: ASK-Def is more robust than AT"),
    ("askdef", "atsnn", "paper: ASK-Def is more robust than AT+SNN"),
    ("atsnn", "at", "AT+SNN against AT, on its own line: not a claim of the paper's text"),
    ("askdef", "at_wide", "control: the ASK term, not G2's larger budget"),
]


def defense_verdicts(verdicts, source: str, row: str, outs: dict) -> str:
    """The training-method claims on one row; outs: per method, per training seed, packed outcomes."""
    return "".join(verdicts.pooled_claim(f"{METHOD_NAMES[a]} above {METHOD_NAMES[b]}, {row}", f"{source}; {what}",
                                         [(outs[a][s], outs[b][s]) for s in outs[a]], "higher")
                   for a, b, what in DEFENSE_CLAIMS)


def seeds_note(params) -> str:
    seeds = params["seeds"]
    if len(seeds) == 1:
        return (f"One training run per method (seed {seeds[0]}): its verdicts on training methods rest on one run "
                f"and carry no training variance.")
    return (f"Every method trained under {len(seeds)} seeds ({', '.join(map(str, seeds))}), each with the "
            f"hyper-parameters tuned on its seed-{seeds[0]} model. Rows: each seed (95% Wilson interval, n images) "
            f"and the mean over seeds (95% t-interval over the {len(seeds)} seeds). A verdict pools the seeds: "
            f"seed-stratified exact McNemar test (each seed's model of one method paired with the same seed's "
            f"model of the other, on the same images), Holm within the table, and `holds` only if every seed's "
            f"difference also has the claimed sign.")


def defense_tables(params, verdicts) -> str:
    names, first = layer_names(params), len(verdicts.records)
    t3 = {m: trained_runs(params, m, "ask") for m in METHOD_NAMES}
    ref3 = pd.DataFrame({METHOD_NAMES[m]: {n: paper_cell(paper.TABLE3[m], n) for n in names}
                         for m in METHOD_NAMES if m in paper.TABLE3})
    lines3 = "".join(defense_verdicts(verdicts, "paper Table 3", n,
                                      {m: {s: o[n] for s, (_, o) in runs.items()} for m, runs in t3.items()})
                     for n in names)
    tally3, first5 = verdicts.tally(first), len(verdicts.records)
    t5 = {m: trained_runs(params, m, "pgd") for m in METHOD_NAMES}
    eps_list = [str(e) for e in params["experiments"]["pgd_eps"]]
    ref5 = pd.DataFrame({METHOD_NAMES[m]: dict(zip(("eps 0", "eps 4", "eps 6", "eps 8"), paper.TABLE5[m]))
                         for m in METHOD_NAMES if m in paper.TABLE5}).T
    lines5 = "".join(defense_verdicts(verdicts, "paper Table 5", f"eps {e}",
                                      {m: {s: o[e] for s, (_, o) in runs.items()} for m, runs in t5.items()})
                     for e in eps_list if e != "0")
    exp, seed0 = params["experiments"], params["seeds"][0]
    n3, n5 = n_of(t3["at"][seed0][0]), t5["at"][seed0][0][eps_list[0]]["n"]
    return (f"## Table 3: DkNN accuracy under ASK-Atk (eps {params['eps']}, cosine) of each training method "
            f"(n = {n3} per seed)\n\n{seeds_note(params)}\n\n"
            + markdown(per_seed_table(params, t3, names, str)) + "\nPaper (CIFAR-10):\n\n" + markdown(ref3) + "\n"
            + lines3 + tally3
            + f"\n## Table 5: DNN accuracy under PGD ({exp['pgd_steps']} steps of "
            f"{params['attacks']['step_fraction']} x eps, {exp['pgd_restarts']} restart(s), n = {n5} per seed)\n\n"
            + markdown(per_seed_table(params, t5, eps_list, lambda e: f"eps {e}"))
            + "\nPaper (CIFAR-10, eps 0/4/6/8):\n\n" + markdown(ref5) + "\n" + lines5 + verdicts.tally(first5))


def stronger_cells(params, method: str, n: int) -> dict:
    """Per layer set: packed outcomes of ASK-Atk (first n), ASK-APGD and the worst case of a model's
    first-seed model (cosine), and the cost of the worst case's cascade (None for the AT model:
    Table 1's runs)."""
    if method == "at":
        outs = {a: outcomes("attack", f"{a}_cosine") for a in suite()}
        return {name: {"ask": pack(unpack(o["start_0"])[:n]), "ask_apgd": outs["ask_apgd"][name]["start_0"],
                       "worst_case": table1_worst_case(outs, name, n), "cascade": None}
                for name, o in outs["ask"].items()}
    m, o = metrics("defense", method), outcomes("defense", method)
    ask = outcomes("trained", model_name(method, params["seeds"][0]))["ask"]
    return {name: {"ask": pack(unpack(ask[name])[:n]), "ask_apgd": o["ask_apgd"][name],
                   "worst_case": o["worst_case"][name], "cascade": m["worst_case"][name]["cascade"]}
            for name in ask}


def stronger_defense_table(params, verdicts) -> str:
    names, first, n = layer_names(params), len(verdicts.records), params["attacks"]["worst_case_size"]
    cells = {m: stronger_cells(params, m, n) for m in METHOD_NAMES}
    columns = {"ask": "ASK-Atk", "ask_apgd": "ASK-APGD", "worst_case": "worst case"}
    df = pd.DataFrame({f"{METHOD_NAMES[m]}: {label}": {name: with_ci(proportion(unpack(c[name][key])))
                                                      for name in names}
                       for m, c in cells.items() for key, label in columns.items()}).T
    lines = "".join(verdicts.claim(f"{METHOD_NAMES[m]}: ASK-APGD lower than ASK-Atk, {name}",
                                   "beyond the paper: a stronger evaluation", c[name]["ask_apgd"], c[name]["ask"],
                                   "lower") for m, c in cells.items() for name in names)
    worst = {m: {name: unpack(c[name]["worst_case"]).mean() for name in names} for m, c in cells.items()}
    gaps = pd.DataFrame({f"{METHOD_NAMES[a]} - {METHOD_NAMES[b]}": {
        name: f"{100 * (worst[a][name] - worst[b][name]):+.1f}" for name in names} for a, b, _ in DEFENSE_CLAIMS}).T
    cost = {}
    for m, c in cells.items():
        for name in names:
            for attack, run in (c[name]["cascade"] or {}).items():
                cost[f"{METHOD_NAMES[m]}, {name}, {ATTACK_NAMES[attack]}"] = {
                    "images attacked": run["images"], "of which fooled": run["fooled"],
                    "ms per image": f"{1000 * run['seconds_per_image']:.2f}"}
    return (f"## Table 3 under stronger attacks: ASK-APGD and the worst case over all {len(suite())} attacks (cosine, "
            f"first {n} images, seed-{params['seeds'][0]} models)\n\nThe AT model's worst case is Table 1's. For the "
            f"other models ASK-Atk and ASK-APGD run on every image; "
            f"{listing(registry.cascade())} (each with the model's "
            f"own tuning and kNN block) then run in turn on the images that every earlier attack failed on "
            f"(AutoAttack's cascade), so an image counts as robust only if all {len(suite())} fail.\n\n"
            + markdown(df) + "\n"
            + lines + verdicts.tally(first)
            + f"\nThe training methods under the worst case, as differences in points (one training run each, seed "
              f"{params['seeds'][0]}: numbers, not verdicts; the verdicts on training methods are Table 3's, over "
              f"every seed):\n\n" + markdown(gaps)
            + "\nCost of the cascade (after ASK-Atk and ASK-APGD):\n\n"
            + (markdown(pd.DataFrame(cost).T) if cost else "none\n"))


def defense_figures(params, verdicts) -> str:
    exp = params["experiments"]
    runs = {m: metrics("defense", m) for m in METHOD_NAMES}
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    eps = sorted(runs["at"]["eps_curve"], key=int)
    by_eps = pd.DataFrame({"eps": [int(e) for e in eps], **{METHOD_NAMES[m]: [100 * r["eps_curve"][e]["accuracy"]
                                                                            for e in eps] for m, r in runs.items()}})
    by_k = pd.DataFrame({"K": exp["k_values"], **{METHOD_NAMES[m]: [100 * r["k_curve"][str(k)]["accuracy"]
                                                                  for k in exp["k_values"]] for m, r in runs.items()}})
    for m, r in runs.items():
        curve(axes[0], by_eps.eps, [r["eps_curve"][e] for e in eps], METHOD_NAMES[m])
        curve(axes[1], by_k.K, [r["k_curve"][str(k)] for k in exp["k_values"]], METHOD_NAMES[m])
    save_points("figure1_right", by_eps)
    save_points("figure5", by_k)
    layers = layer_set_name(exp["sweep_layers"])
    axes[0].set(title=f"Figure 1 right: ASK-Atk on {layers}", xlabel="eps (/255)", ylabel="DkNN accuracy %")
    axes[1].set(title=f"Figure 5: ASK-Atk against K ({layers})", xlabel="K", ylabel="DkNN accuracy %")
    for ax in axes:
        ax.legend(fontsize=7)
    table = pd.DataFrame({METHOD_NAMES[m]: {**{f"eps {e}": with_ci(r["eps_curve"][e]) for e in eps},
                                            **{f"K = {k}": with_ci(r["k_curve"][str(k)]) for k in exp["k_values"]}}
                          for m, r in runs.items()}).T
    return (f"## Figures 1 (right) and 5: robustness of the trained models (n = {n_of(runs['at']['eps_curve'])}; "
            f"bands: 95% Wilson intervals)\n\n"
            + save_figure(fig, "defense_curves") + "\n" + markdown(table))
