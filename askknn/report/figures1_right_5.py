"""Section: Figures 1 (right) and 5: robustness of the trained models against the budget and K."""
from __future__ import annotations

import pandas as pd

from askknn.report.common import (
    METHOD_NAMES,
    curve,
    markdown,
    metrics,
    n_of,
    plt,
    save_figure,
    save_points,
    with_ci,
)
from askknn.runtime import layer_set_name


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
