"""What a table cell and the report's paired tests keep of one attack run: the accuracy with its n
and interval, the success rate, the credibility as a detector, and the per-image outcomes packed
as text."""
from __future__ import annotations

import numpy as np

from askknn.stats import auroc, pack, proportion


def cell(result: dict, judge: str) -> dict:
    """The numbers a table cell needs from one `run` result: accuracy with n and 95% interval."""
    outcomes = result["outcomes"][judge]
    clean, adv = outcomes["clean"], outcomes["adversarial"]
    summary = {**proportion(adv), "clean": proportion(clean),
               "success_rate": float((~adv[clean]).mean()) if clean.any() else 0.0,
               "seconds_per_image": result["seconds_per_image"], "hyper": result["hyper"]}
    if "credibility" in outcomes:
        summary["credibility"] = credibility_detection(outcomes)
    return summary


def credibility_detection(outcomes: dict) -> dict:
    """The calibrated DkNN's credibility as a detector of successful adversarial examples: AUROC of
    the credibility of clean inputs it classifies correctly against that of the adversarial
    examples that fool it (1: perfectly detected, 0.5: invisible)."""
    cred, clean, adv = outcomes["credibility"], outcomes["clean"], outcomes["adversarial"]
    fooled = clean & ~adv
    return {**auroc(cred["clean"][clean], cred["adversarial"][fooled]),
            "mean_clean": float(cred["clean"][clean].mean()) if clean.any() else None,
            "mean_adversarial": float(cred["adversarial"][fooled].mean()) if fooled.any() else None}


def outcome(result: dict, judge: str) -> dict:
    """Per-image outcomes, packed: `robust` (1 = correct clean and under attack), for the report's
    paired tests, and `clean` (1 = correct clean), which bounds it image by image."""
    return paired(result["outcomes"][judge]["adversarial"], result["outcomes"][judge]["clean"])


def paired(robust: np.ndarray, clean: np.ndarray) -> dict:
    return {"robust": pack(robust), "clean": pack(clean)}

