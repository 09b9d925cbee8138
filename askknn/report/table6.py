"""Section: Table 6: targeted against non-targeted ASK-Atk."""
from __future__ import annotations

import pandas as pd

from askknn import paper
from askknn.report import claims
from askknn.report.common import (
    appendix,
    first_images,
    layer_names,
    markdown,
    metrics,
    n_of,
    outcomes,
    paper_cell,
    with_ci,
)


def table6(params, verdicts) -> str:
    names, (targeted, t_out) = layer_names(params), appendix("targeted")
    plain, p_out = metrics("attack", "ask_l2")["layer_sets"], outcomes("attack", "ask_l2")
    df = pd.DataFrame({n: {"non-targeted (Table 1)": with_ci(plain[n]), "targeted": with_ci(targeted[n]),
                           "non-targeted (paper)": paper_cell(paper.TABLE1["l2"]["ask"], n),
                           "targeted (paper)": paper_cell(paper.TABLE6_TARGETED, n)} for n in names}).T
    claim = claims.TABLE6
    lines = "".join(verdicts.within(claim.what(layers=n), claim.source,
                                    t_out[n], p_out[n]["start_0"], claim.margin) for n in names)
    return (f"## Table 6: targeted (nearest class) against non-targeted ASK-Atk, l2 (targeted: n = "
            f"{n_of(targeted)}, paired with {first_images(n_of(targeted), n_of(plain))} of Table 1)\n\n"
            + markdown(df) + "\n" + lines)
