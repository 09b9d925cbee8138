"""Sections: the setting and evaluation protocol, clean accuracy, training, tuning."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from askknn.report.common import (
    plt,
    ATTACK_NAMES,
    METHOD_NAMES,
    suite,
    curve,
    layer_names,
    markdown,
    metrics,
    pct,
    rate_with_ci,
    save_figure,
    with_ci,
)
from askknn.runtime import PLOTS, layer_set_name, model_name
from askknn.stats import (
    ALPHA,
    proportion_of,
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


def paper_reference(dataset: str) -> str:
    if dataset == "cifar10":
        return ("The paper's numbers (CIFAR-10, full-width VGG16-BN trained for 200 epochs with PGD-10, AT at "
                "4/255, attacks at 8/255, the whole test set) are shown beside ours: same dataset and model "
                "family, so its orderings can be checked here; its levels are not expected at this scale.")
    return ("The paper's numbers are for CIFAR-10 (VGG16-BN, AT at 4/255, attacks at 8/255) and are shown for "
            "reference only.")


def setup(params, verdicts) -> str:
    data, att, exp = metrics("", "data"), params["attacks"], params["experiments"]
    wide = params["methods"]["at_wide"]
    return (
        f"Preset `{params['preset']}`: {data['dataset']}{data_origin(data)}, model `{params['model']['name']}`"
        f"{model_width(params['model'])}, {data['train_images']} training images, bank of {data['bank_images']}, "
        f"DkNN K = {params['dknn']['k']}. AT budget {params['train']['eps']}/255; AT (G2 budget) trains at "
        f"{wide['eps']}/255, ASK-Def's G2 budget. {paper_reference(data['dataset'])}\n\n"
        "### Evaluation protocol\n\n"
        f"- Attack budget eps = {params['eps']}/255. Step rule: every iterative attack (ASK-Atk and its variants, "
        f"DkNN-Atk, AdvKnn, Table 5's PGD) takes {att['steps']} sign steps of {att['step_fraction']} x eps "
        f"(here {att['step_fraction'] * params['eps']:g}/255), from a random start, at every budget.\n"
        f"- Training seeds: every method is trained under seeds {', '.join(map(str, params['seeds']))}; Tables 3 "
        f"and 5 report every seed and pool them; Table 1, the appendix, the curves and the stronger attacks use "
        f"the seed-{params['seeds'][0]} models.\n"
        f"- Tuning: tau, omega and DkNN-Atk's steepness are chosen per method on its seed-{params['seeds'][0]} model, "
        f"on {att['tuning_size']} class-balanced images of the held-out split of the training data "
        f"({data['val_images']} images never trained on), at eps = {params['eps']}/255, and then fixed for every "
        f"seed; no evaluation image is seen by the tuner, and no tuning image is scored.\n"
        f"- Images: Tables 1, 3 and 5 and the clean accuracies use all {data['eval_images']} evaluation images "
        f"(class-balanced, from the test set); the appendix tables and the curves use the first "
        f"{exp['subset_size']} of them. Every table states its n.\n"
        f"- Randomness: every attack run owns a generator seeded from (attacks.seed, model, attack, layers, "
        f"metric, eps, options, start); Table 1's ASK-Atk cells are run from {att['random_starts']} random "
        f"starts (the first on every image, all of them on the first {exp['subset_size']}).\n"
        f"- Beyond the paper: ASK-APGD (the ASK margin max_c z_c - z_y, which does not saturate in float32, "
        f"with APGD's step schedule; up to {att['ask_apgd']['restarts']} runs of {att['ask_apgd']['steps']} steps, "
        f"restart: {att['ask_apgd']['restart']}, ASK-Atk's tuned tau and omega) and SW20 (Sitawarin & Wagner 2020, "
        f"fixed-budget l_inf form, {att['steps']} steps) run on the first {att['worst_case_size']} evaluation "
        f"images, where the worst case over all {len(suite())} attacks is reported (Tables 1 and 3).\n"
        f"- Statistics: accuracies in percent with 95% Wilson intervals [low, high]. A verdict on a claim "
        f"compares two columns on the same images: exact McNemar test (two-sided), its p-value adjusted by "
        f"Holm's method within the verdict's family (a table, or a group of claims); `holds` or `reversed` when "
        f"the adjusted p-value is below {ALPHA}, `not resolved at n = ...` otherwise. The worst case is reported "
        f"as a number beside ASK-Atk, not tested (it includes ASK-Atk, so it cannot be higher). A robust image "
        f"is one classified correctly clean and under attack. All verdicts: `metrics/verdicts.json`.\n")


def models_of(params):
    """(label, method, seed) of every trained model: every method under every training seed."""
    return [(f"{METHOD_NAMES[m]}, seed {s}", m, s) for m in METHOD_NAMES for s in params["seeds"]]


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


COLLAPSE = 0.5   # catastrophic overfitting: held-out PGD accuracy below this fraction of its best epoch's


def training(params, verdicts) -> str:
    n_val, seed0 = metrics("", "data")["val_images"], params["seeds"][0]
    at_seconds = metrics("train", model_name("at", seed0))["epoch_seconds"]
    rows, collapsed = {}, []
    for label, method, seed in models_of(params):
        r = metrics("train", model_name(method, seed))
        pgd = pd.read_csv(PLOTS / f"train_{model_name(method, seed)}.csv")["val_pgd_accuracy"]
        if pgd.iloc[-1] < COLLAPSE * pgd.max():
            collapsed.append(label)
        rows[label] = {"epochs": r["epochs"], "held-out clean acc.": rate_with_ci(r["val_clean_accuracy"], n_val),
                       "held-out PGD acc.": rate_with_ci(r["val_pgd_accuracy"], n_val),
                       "best epoch's PGD acc.": pct(pgd.max()), "seconds per epoch": f"{r['epoch_seconds']:.1f}",
                       "epoch time / AT's": f"{r['epoch_seconds'] / at_seconds:.2f}"}
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for method, name in METHOD_NAMES.items():
        points = pd.read_csv(PLOTS / f"train_{model_name(method, seed0)}.csv")
        for ax, column in zip(axes, ("val_clean_accuracy", "val_pgd_accuracy")):
            curve(ax, points.epoch, [proportion_of(round(a * n_val), n_val) for a in points[column]], name)
    for ax, title in zip(axes, ("held-out clean accuracy", f"held-out PGD accuracy (eps {params['train']['eps']})")):
        ax.set(title=title, xlabel="epoch", ylabel="%")
        ax.legend(fontsize=7)
    train = params["train"]
    recipe = (f"FGSM with a random start (one step of {train['pgd_step_size']:g}/255)" if train["pgd_steps"] == 1
              else f"PGD-{train['pgd_steps']} (step {train['pgd_step_size']:g}/255)")
    return (f"## Training (held-out split of the training data, n = {n_val}; the final model is kept, the test "
            f"set is never used; training attack: {recipe}; held-out PGD-{train['val_pgd_steps']} at the AT budget "
            f"for every method)\n\nCatastrophic overfitting (the final epoch's held-out PGD accuracy below "
            f"{COLLAPSE:g} x its best epoch's): "
            + (", ".join(collapsed) if collapsed else f"none of the {len(rows)} runs") + ".\n\n"
            + markdown(pd.DataFrame(rows).T) + f"\nCurves: the seed-{seed0} models (bands: 95% Wilson intervals).\n\n"
            + save_figure(fig, "training_curves"))


def edge_direction(cell: dict) -> str:
    """Per hyper-parameter on its grid's edge, the direction in which a stronger value may lie."""
    words = []
    for key in cell["on_grid_edge"]:
        values = sorted({entry[key] for entry in cell["grid"]})
        side = "below" if cell["chosen"][key] == values[0] else "above"
        bound = " (near omega's bound: 0 or 1 attacks one layer alone)" if key == "omega" else ""
        words.append(f"{key}: {side} the grid{bound}")
    return ", ".join(words) or "no"


def spread(cell: dict) -> float:
    scores = [e["dknn_accuracy"] for e in cell["grid"]]
    return max(scores) - min(scores)


def edge_lead(cell: dict) -> str:
    """Per hyper-parameter on its grid's edge, how many points of DkNN accuracy the chosen value
    leaves below its inward neighbour on the grid (the other hyper-parameters as chosen)."""
    def score(entry: dict) -> float:
        return next(e["dknn_accuracy"] for e in cell["grid"] if all(e[k] == v for k, v in entry.items()))
    leads = []
    for key in cell["on_grid_edge"]:
        values = sorted({entry[key] for entry in cell["grid"]})
        inward = values[1] if cell["chosen"][key] == values[0] else values[-2]
        leads.append(f"{key}: {100 * (score({**cell['chosen'], key: inward}) - score(cell['chosen'])):.1f}")
    return ", ".join(leads) or "-"


def tuning(params, verdicts) -> str:
    rows = []
    for method, label in METHOD_NAMES.items():
        for c in metrics("tuning", method)["cells"]:
            rows.append({"model": label, "attack": ATTACK_NAMES[c["attack"]], "layers": layer_set_name(c["layers"]),
                         "metric": c["metric"], "chosen": ", ".join(f"{k} = {v}" for k, v in c["chosen"].items()),
                         "on the grid's edge": edge_direction(c), "lead over the inward value (points)": edge_lead(c),
                         "spread over the grid (points)": f"{100 * spread(c):.1f}", "tuning images": c["images"]})
    on_edge = sum(r["on the grid's edge"] != "no" for r in rows)
    n = rows[0]["tuning images"] if rows else 0
    return ("## Tuned hyper-parameters (held-out training images; lowest DkNN accuracy wins)\n\n"
            f"{on_edge} of {len(rows)} choices lie on the edge of their grid: a stronger value may lie beyond it, in "
            "the direction given, so a comparison with that attack may favour the other one. The lead over the "
            "inward value says by how much the edge value beat its neighbour on the grid, and the spread how far "
            f"apart the grid's best and worst entries are: on {n} tuning images a difference of a point or two "
            "is within the tuning set's noise, and there an edge choice says little. The tuner's curve of every "
            "cell is in `metrics/tuning/<method>.json`.\n\n"
            + markdown(pd.DataFrame(rows).set_index("model")))
