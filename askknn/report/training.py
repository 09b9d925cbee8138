"""Section: Training: held-out accuracies, epoch times, curves and the catastrophic-overfitting check."""
from __future__ import annotations

import pandas as pd

from askknn.report.common import (
    METHOD_NAMES,
    curve,
    markdown,
    metrics,
    models_of,
    plt,
    rate_with_ci,
    save_figure,
)
from askknn.runtime import PLOTS, model_name
from askknn.stats import (
    proportion_of,
)

COLLAPSE = 0.5   # catastrophic overfitting: held-out PGD accuracy below this fraction of its best epoch's


def training_attack(eps: int, steps: int, step_size: float) -> str:
    return (f"FGSM with a random start (one step of {step_size:g}/255 at eps {eps}/255)" if steps == 1
            else f"PGD-{steps} (step {step_size:g}/255 at eps {eps}/255)")


def training(params, verdicts) -> str:
    n_val, seed0 = metrics("", "data")["val_images"], params["seeds"][0]
    at_seconds = {seed: metrics("train", model_name("at", seed))["epoch_seconds"] for seed in params["seeds"]}
    rows, collapsed = {}, []
    for label, method, seed in models_of(params):
        r = metrics("train", model_name(method, seed))
        pgd = pd.read_csv(PLOTS / f"train_{model_name(method, seed)}.csv")["val_pgd_accuracy"]
        if pgd.iloc[-1] < COLLAPSE * pgd.max():
            collapsed.append(label)
        rows[label] = {"epochs": r["epochs"], "held-out clean acc.": rate_with_ci(r["val_clean_accuracy"], n_val),
                       "held-out PGD acc.": rate_with_ci(r["val_pgd_accuracy"], n_val),
                       "best epoch's PGD acc.": rate_with_ci(pgd.max(), n_val),
                       "seconds per epoch": f"{r['epoch_seconds']:.1f}",
                       "epoch time / AT's (same seed)": f"{r['epoch_seconds'] / at_seconds[seed]:.2f}"}
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for method, name in METHOD_NAMES.items():
        points = pd.read_csv(PLOTS / f"train_{model_name(method, seed0)}.csv")
        for ax, column in zip(axes, ("val_clean_accuracy", "val_pgd_accuracy")):
            curve(ax, points.epoch, [proportion_of(round(a * n_val), n_val) for a in points[column]], name)
    for ax, title in zip(axes, ("held-out clean accuracy", f"held-out PGD accuracy (eps {params['train']['eps']})")):
        ax.set(title=title, xlabel="epoch", ylabel="%")
        ax.legend(fontsize=7)
    train, wide = params["train"], params["methods"]["at_wide"]
    recipe = (f"{training_attack(train['eps'], train['pgd_steps'], train['pgd_step_size'])}, "
              f"{METHOD_NAMES['at_wide']}: {training_attack(wide['eps'], wide['steps'], wide['step_size'])}")
    return (f"## Training (held-out split of the training data, n = {n_val}; the final model is kept, the test "
            f"set is never used; training attack: {recipe}; held-out PGD-{train['val_pgd_steps']} at the AT budget, "
            f"step eps/4, for every method, an image counting if it is classified correctly clean and under "
            f"attack; epoch times against the AT run of the same seed)\n\nCatastrophic overfitting (the final "
            f"epoch's held-out PGD accuracy below {COLLAPSE:g} x its best epoch's): "
            + (", ".join(collapsed) if collapsed else f"none of the {len(rows)} runs") + ".\n\n"
            + markdown(pd.DataFrame(rows).T) + f"\nCurves: the seed-{seed0} models (bands: 95% Wilson intervals).\n\n"
            + save_figure(fig, "training_curves"))
