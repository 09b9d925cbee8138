"""Section: The calibrated DkNN: does an attack also evade detection?"""
from __future__ import annotations

import pandas as pd

from askknn.report.common import (
    ATTACK_NAMES,
    markdown,
    metrics,
    suite,
)


def credibility(params, verdicts) -> str:
    """Papernot & McDaniel's credibility as a detector of the adversarial examples of Table 1."""
    rows = {}
    for metric in params["dknn"]["metrics"]:
        for a in suite():
            for name, c in metrics("attack", f"{a}_{metric}")["layer_sets"].items():
                cred = c["credibility"]
                rows[f"{ATTACK_NAMES[a]}, {name}, {metric}"] = {
                    "AUROC": "-" if cred["auroc"] is None else f"{cred['auroc']:.3f}",
                    "mean credibility, clean": "-" if cred["mean_clean"] is None else f"{cred['mean_clean']:.3f}",
                    "mean credibility, adversarial": "-" if cred["mean_adversarial"] is None
                    else f"{cred['mean_adversarial']:.3f}",
                    "clean (correct)": cred["n_high"], "adversarial (fooling)": cred["n_low"]}
    n_val = metrics("", "data")["val_images"]
    return (f"## Calibrated DkNN: does an attack also evade detection? (AT model, Table 1's runs)\n\n"
            f"Papernot & McDaniel's DkNN calibrated on the {n_val} held-out training images: credibility = the "
            f"empirical p-value of the predicted class. AUROC of the credibility separating the clean images the "
            f"DkNN classifies correctly from the adversarial examples that fool it (1: always detected, 0.5: "
            f"invisible; below 0.5: the adversarial examples look more credible than clean images). The tables "
            f"above use the plain vote.\n\n" + markdown(pd.DataFrame(rows).T))
