"""Section: The setting of the run: data, model, budgets, and the evaluation protocol's values."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from askknn.report.common import (
    first_images,
    listing,
    markdown,
    metrics,
    subset,
    suite,
)
from askknn.stats import (
    ALPHA,
)


def data_origin(data: dict) -> str:
    """Where the images came from when not from the standard release (a path: archive or folder)."""
    if data["source"] in ("auto", "download"):
        return ""
    jpeg = any(tag in Path(data["source"]).name.lower() for tag in ("jpeg", "jpg"))
    return (f" (read from `{data['source']}`, sha256 {str(data['source_sha256'])[:12]}"
            + ("; a JPEG re-encoding of the dataset: pixel values differ slightly from the original release, "
               "so accuracies differ a little" if jpeg else "") + ")")


def model_width(model: dict) -> str:
    return "" if model["width"] == 1.0 else f" at {model['width']:g} of its published channel width"


def paper_reference(dataset: str, model: dict) -> str:
    if dataset != "cifar10":
        return ("The paper's numbers are for CIFAR-10 (VGG16-BN, AT at 4/255, attacks at 8/255) and are shown for "
                "reference only.")
    setting = ("The paper's numbers (CIFAR-10, full-width VGG16-BN trained for 200 epochs with PGD-10, AT at 4/255, "
               "attacks at 8/255, the whole test set) are shown beside ours")
    if model["name"] == "vgg16_bn" and model["width"] == 1.0:
        return (f"{setting}: the same network, trained far shorter (see Training), so both the orderings and "
                f"the levels can be compared.")
    return f"{setting}: same dataset and model family, so its orderings can be checked here; its levels are not " \
           "expected at this scale."


def protocol_values(params, data: dict) -> dict[str, str]:
    """The evaluation protocol's settings in this run (the rules: README, "Evaluation protocol")."""
    att, exp, seeds = params["attacks"], params["experiments"], params["seeds"]
    apgd = att["ask_apgd"]
    return {
        "attack budget": f"eps = {params['eps']}/255, every attack given the true label",
        "step rule": f"{att['steps']} sign steps of {att['step_fraction']} x eps "
                     f"({att['step_fraction'] * params['eps']:g}/255) from a random start, at every budget",
        "Table 5's PGD": f"{exp['pgd_steps']} steps of {att['step_fraction']} x eps, {exp['pgd_restarts']} restart(s)",
        "training seeds": f"{', '.join(map(str, seeds))}; Table 1, the appendix, the curves and the stronger attacks "
                          f"use the seed-{seeds[0]} models",
        "tuning": f"per method on its seed-{seeds[0]} model, {att['tuning_size']} class-balanced images of the "
                  f"{data['val_images']} held-out training images, at eps = {params['eps']}/255",
        "evaluation images": f"{data['eval_images']} (Tables 1, 3, 5, clean accuracy); "
                             f"{first_images(exp['table_size'], data['eval_images'])} for the appendix tables; "
                             f"{first_images(exp['subset_size'], data['eval_images'])} for the curves; "
                             f"{first_images(att['worst_case_size'], data['eval_images'])} for "
                             f"{listing(subset())}, and "
                             f"for the worst case over all {len(suite())} attacks",
        "ASK-Atk's random starts (Table 1)": f"{att['random_starts']}: the first on every image, all of them on "
                                             f"{first_images(exp['subset_size'], data['eval_images'])}",
        "ASK-APGD": f"up to {apgd['restarts']} runs of {apgd['steps']} steps, restart: {apgd['restart']}",
        "statistics": f"95% Wilson intervals; exact McNemar, Holm within each family, level {ALPHA}",
    }


def setup(params, verdicts) -> str:
    data, model = metrics("", "data"), params["model"]
    wide = params["methods"]["at_wide"]
    values = pd.DataFrame({"setting": protocol_values(params, data)})
    return (
        f"Preset `{params['preset']}`: {data['dataset']}{data_origin(data)}, model `{model['name']}`"
        f"{model_width(model)}, {data['train_images']} training images, bank of {data['bank_images']}, "
        f"DkNN K = {params['dknn']['k']}. AT budget {params['train']['eps']}/255; AT (G2 budget) trains at "
        f"{wide['eps']}/255, ASK-Def's G2 budget. {paper_reference(data['dataset'], model)}\n\n"
        "### Evaluation protocol\n\n"
        "The rules (robust means correct clean and under attack; tuning on held-out training images only; "
        "class-interleaved subsets; randomness owned by each run; the worst case as a number beside ASK-Atk, "
        "not tested; the statistics) are written once, in README.md, \"Evaluation protocol\". This run's "
        "settings:\n\n" + markdown(values) + "\nAll verdicts: `metrics/verdicts.json`.\n")
