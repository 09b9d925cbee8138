"""Section: Table 7: ASK-Atk with its negatives drawn at random."""
from __future__ import annotations

import pandas as pd

from askknn.report import claims
from askknn.report.common import (
    ATTACK_NAMES,
    appendix,
    baselines,
    first_images,
    layer_names,
    markdown,
    metrics,
    n_of,
    outcomes,
    paper_attacks,
    with_ci,
)


def table7(params, verdicts) -> str:
    names, (rand, r_out) = layer_names(params), appendix("random_negatives")
    knn = metrics("attack", "ask_cosine")["layer_sets"]
    others = {a: metrics("attack", f"{a}_cosine")["layer_sets"] for a in baselines()}
    o_out = {a: outcomes("attack", f"{a}_cosine") for a in paper_attacks()}
    df = pd.DataFrame({n: {"X- by kNN search (Table 1)": with_ci(knn[n]), "X- at random": with_ci(rand[n]),
                           **{ATTACK_NAMES[a]: with_ci(c[n]) for a, c in others.items()}} for n in names}).T
    lines = "".join(verdicts.claim(c.what(b=ATTACK_NAMES[c.b], layers=n), c.source, r_out[n],
                                   o_out[c.b][n]["start_0"], c.direction)
                    for n in names for c in claims.table7())
    return (f"## Table 7: ASK-Atk with X- drawn at random (X+ by kNN search), cosine (random X-: n = "
            f"{n_of(rand)}; the other columns: Table 1, n = {n_of(knn)}; verdicts pair "
            f"{first_images(n_of(rand), n_of(knn))})\n\n" + markdown(df) + "\n" + lines)
