"""Section: Table 9: K+ against K-."""
from __future__ import annotations

import pandas as pd

from askknn import paper
from askknn.report import claims
from askknn.report.common import (
    appendix,
    markdown,
    n_of,
    with_ci,
)
from askknn.runtime import layer_set_name


def table9(params, verdicts) -> str:
    (cells, outs), exp = appendix("k_pos_neg"), params["experiments"]
    df = pd.DataFrame({f"K+ = {kp}": {f"K- = {kn}": with_ci(cells[str(kp)][str(kn)])
                                      for kn in exp["k_neg_values"]} for kp in exp["k_pos_values"]}).T
    ref = pd.DataFrame({f"K+ = {kp}": dict(zip((f"K- = {kn}" for kn in (1, 3, 5, 7, 9)), v))
                        for kp, v in paper.TABLE9.items()}).T
    layers = layer_set_name(exp["sweep_layers"])
    smallest = str(min(exp["k_neg_values"]))
    default = str(params["attacks"]["ask"]["k_neg"])
    claim = claims.TABLE9
    lines = "".join(verdicts.claim(claim.what(k_pos=kp, default=default, smallest=smallest), claim.source,
                                   outs[str(kp)][default], outs[str(kp)][smallest], claim.direction)
                    for kp in exp["k_pos_values"]) if default in map(str, exp["k_neg_values"]) else ""
    return (f"## Table 9: K+ against K- ({layers}; DkNN K = K+; n = {n_of(cells[str(exp['k_pos_values'][0])])})\n\n"
            + markdown(df) + "\nPaper (CIFAR-10, conv4):\n\n" + markdown(ref) + "\n" + lines)
