"""Section: Clean accuracy of the DNN and the DkNN of every trained model, and the DkNN's tie rate."""
from __future__ import annotations

import pandas as pd

from askknn.report.common import (
    layer_names,
    markdown,
    metrics,
    models_of,
    pct,
    with_ci,
)
from askknn.runtime import model_name


def clean_accuracy(params, verdicts) -> str:
    rows, ties, n = {}, {}, None
    for label, method, seed in models_of(params):
        m = metrics("clean", model_name(method, seed))
        n = m["dnn"]["n"]
        row = {"DNN": with_ci(m["dnn"])}
        for metric in params["dknn"]["metrics"]:
            row.update({f"DkNN {name} ({metric})": with_ci(m["dknn"][metric][name]) for name in layer_names(params)})
        rows[label] = row
        ties[label] = {f"{name} ({metric})": pct(m["dknn"][metric][name]["tie_rate"])
                       for metric in params["dknn"]["metrics"] for name in layer_names(params)}
    return (f"## Clean accuracy (n = {n})\n\n" + markdown(pd.DataFrame(rows).T)
            + "\nHow often the DkNN's vote is tied (%): the class of the nearest neighbour among the tied classes "
              "then wins, a rule that favours no class index.\n\n" + markdown(pd.DataFrame(ties).T))
