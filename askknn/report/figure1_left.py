"""Section: Figure 1 (left): the AT model's DkNN against the budget, under each of the paper's attacks."""
from __future__ import annotations

import pandas as pd

from askknn.report.common import (
    ATTACK_NAMES,
    curve,
    markdown,
    metrics,
    n_of,
    paper_attacks,
    plt,
    save_figure,
    save_points,
    swept,
    with_ci,
)
from askknn.runtime import layer_set_name


def eps_curves(params, verdicts) -> str:
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    points = {"ask": metrics("defense", "at")["eps_curve"],
              **{a: metrics("eps_sweep", a)["points"] for a in swept()}}
    eps = sorted(points["ask"], key=int)
    rows, curves = {}, {}
    for a in paper_attacks():
        curves[ATTACK_NAMES[a]] = [100 * points[a][e]["accuracy"] for e in eps]
        curve(ax, [int(e) for e in eps], [points[a][e] for e in eps], ATTACK_NAMES[a])
        rows[ATTACK_NAMES[a]] = {f"eps {e}": with_ci(points[a][e]) for e in eps}
    save_points("figure1_left", pd.DataFrame({"eps": [int(e) for e in eps], **curves}))
    layers = layer_set_name(params["experiments"]["sweep_layers"])
    ax.set(title=f"DkNN ({layers}, cosine) under attack", xlabel="eps (/255)", ylabel="accuracy %")
    ax.legend()
    return (f"## Figure 1 (left): DkNN accuracy of the AT model against the budget ({layers}, "
            f"n = {n_of(points['ask'])}, step = {params['attacks']['step_fraction']} x eps; bands: 95% Wilson "
            f"intervals)\n\n"
            + markdown(pd.DataFrame(rows).T) + "\n" + save_figure(fig, "figure1_left_attacks"))
