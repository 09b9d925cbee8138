"""Section: AdvKnn's deep kNN blocks: their agreement with the real kNN."""
from __future__ import annotations

import pandas as pd

from askknn.report.common import (
    METHOD_NAMES,
    markdown,
    metrics,
    rate_with_ci,
)


def advknn_block(params, verdicts) -> str:
    rows, n_val = {}, metrics("", "data")["val_images"]
    for method, metric in [(m, metric) for m in METHOD_NAMES for metric in params["dknn"]["metrics"]]:
        blocks = metrics("advknn", f"{method}_{metric}")
        for block in ("single", "multi"):
            rows[f"{METHOD_NAMES[method]}, {metric}, lambda = {blocks[block]['lam']:g} ({block}-layer attacks)"] = {
                layer: rate_with_ci(v, n_val) for layer, v in blocks[block]["agreement_with_knn"].items()}
    return (f"## AdvKnn's deep kNN blocks: agreement (%) with the real kNN on held-out images (n = {n_val})\n\n"
            + markdown(pd.DataFrame(rows).T))
