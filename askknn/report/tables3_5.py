"""Section: Tables 3 and 5: the training methods under ASK-Atk and PGD, over training seeds."""
from __future__ import annotations

import pandas as pd

from askknn import paper
from askknn.report import claims
from askknn.report.common import (
    METHOD_NAMES,
    layer_names,
    markdown,
    n_of,
    paper_cell,
    per_seed_table,
    trained_runs,
)


def defense_verdicts(verdicts, source: str, row: str, outs: dict) -> str:
    """The training-method claims on one row; outs: per method, per training seed, packed outcomes."""
    return "".join(verdicts.pooled_claim(c.what(a=METHOD_NAMES[c.a], b=METHOD_NAMES[c.b], row=row),
                                         f"{source}; {c.source}", [(outs[c.a][s], outs[c.b][s]) for s in outs[c.a]],
                                         c.direction)
                   for c in claims.TRAINING_METHODS)


def seeds_note(params) -> str:
    seeds = params["seeds"]
    if len(seeds) == 1:
        return (f"One training run per method (seed {seeds[0]}): a verdict on a training method needs at least two "
                f"training seeds, so every one below reads `not resolved (one training run)` whatever its p-value; "
                f"the paired test on this one run's models is shown beside it.")
    return (f"Every method trained under {len(seeds)} seeds ({', '.join(map(str, seeds))}), each with the "
            f"hyper-parameters tuned on its seed-{seeds[0]} model. Rows: each seed (95% Wilson interval, n images) "
            f"and the mean over seeds (95% t-interval over the {len(seeds)} seeds). A verdict pools the seeds and "
            f"must survive both sources of variance: the images (exact sign test on each image's difference summed "
            f"over the seeds: the seeds share their images, so the image is the unit) and the training seeds "
            f"(one-sample t-test of the per-seed differences, {len(seeds) - 1} degrees of freedom); its p-value is the "
            f"larger of the two, Holm within the table, and `holds` only if every seed's difference also has the "
            f"claimed sign. With few seeds the t-test resolves only differences that are large against their "
            f"spread between seeds; more seeds (`-S 'seeds=[0,1,2,3,4]'`) resolve smaller ones.")


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
