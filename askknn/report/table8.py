"""Section: Table 8: attacked layers against the DkNN's layers."""
from __future__ import annotations

import pandas as pd

from askknn import paper
from askknn.report import claims
from askknn.report.common import (
    appendix,
    layer_names,
    markdown,
    n_of,
    paper_cell,
    with_ci,
)


def table8(params, verdicts) -> str:
    names, (cells, outs) = layer_names(params), appendix("cross_layers")
    df = pd.DataFrame({f"ASK-Atk on {a}": {f"DkNN on {d}": with_ci(cells[a][d]) for d in names} for a in names})
    ref = pd.DataFrame({f"ASK-Atk on {a}": {f"DkNN on {d}": paper_cell(paper.TABLE8[d], a) for d in names
                                            if d in paper.TABLE8} for a in names})
    single = [n for n in names if "+" not in n]
    claim = claims.TABLE8
    lines = "".join(verdicts.claim(claim.what(layer=d, other=a), claim.source, outs[d][d], outs[a][d],
                                   claim.direction) for d in single for a in single if a != d)
    return (f"## Table 8: attacked layers against DkNN layers (gray box, n = {n_of(cells[names[0]])})\n\n"
            + markdown(df) + "\nPaper (CIFAR-10):\n\n" + markdown(ref) + "\n" + lines)
