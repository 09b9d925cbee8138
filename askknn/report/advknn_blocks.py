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
    rows, n_val, n_eval = {}, metrics("", "data")["val_images"], None
    for method, metric in [(m, metric) for m in METHOD_NAMES for metric in params["dknn"]["metrics"]]:
        blocks = metrics("advknn", f"{method}_{metric}")
        images = [("held-out", "agreement_with_knn", n_val)]
        if "evaluation_images" in blocks:   # results of runs before it was measured have the held-out images only
            n_eval = blocks["evaluation_images"]
            images.append(("evaluation images", "agreement_on_evaluation_images", n_eval))
        for block in ("single", "multi"):
            rows[f"{METHOD_NAMES[method]}, {metric}, lambda = {blocks[block]['lam']:g} ({block}-layer attacks)"] = {
                f"{layer}, {where}": rate_with_ci(v, n) for where, key, n in images
                for layer, v in blocks[block][key].items()}
    where = f" and on the evaluation images, those the attacks run on (n = {n_eval})" if n_eval else ""
    return (f"## AdvKnn's deep kNN blocks: agreement (%) with the real kNN on held-out images (n = {n_val}){where}\n\n"
            + markdown(pd.DataFrame(rows).T))
