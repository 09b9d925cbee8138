"""Section: Figure 4: ASK-Atk's sensitivity to the temperature and to K."""
from __future__ import annotations

import pandas as pd

from askknn.report.common import (
    appendix,
    curve,
    markdown,
    n_of,
    plt,
    save_figure,
    with_ci,
)


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
