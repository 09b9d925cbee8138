"""Paper-style Markdown tables and PNG figures from the metrics JSON and the per-image outcomes.

Every accuracy is printed with its 95% Wilson interval and n. Every verdict on a claim of the
paper compares two columns on the same images with a paired test (`askknn.stats`) and reads
`holds`, `reversed` or `not resolved at n = ...`; the verdicts, with their p-values or intervals,
also go to metrics/verdicts.json.

Each report section is a function (params, verdicts) -> Markdown in SECTIONS; it reads the files
named by the parameter lists (methods, attacks, layer sets), never by listing a folder.
"""
from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from askknn import paper  # noqa: E402
from askknn.io import atomic_path, read_json  # noqa: E402
from askknn.runtime import METRICS, OUTCOMES, PLOTS, REPORTS, layer_set_name, model_name  # noqa: E402
from askknn.stats import (ALPHA, claim_verdict, equivalence_verdict, holm, pack, pooled_claim_verdict,  # noqa: E402
                          proportion, proportion_of, seed_mean, unpack)

METHOD_NAMES = {"at": "AT", "at_wide": "AT (G2 budget)", "askdef": "ASK-Def", "atsnn": "AT+SNN"}
ATTACK_NAMES = {"ask": "ASK-Atk", "advknn": "AdvKnn", "dknn_atk": "DkNN-Atk", "ask_apgd": "ASK-APGD",
                "sw20": "SW20"}
ATTACKS = ("ask", "advknn", "dknn_atk")   # the paper's
SUITE = ATTACKS + ("ask_apgd", "sw20")    # every attack: the worst case is over all of them
GOAL_POINTS = 5   # the stronger attack should leave the AT model's DkNN this much less accurate than ASK-Atk
FIGURES = REPORTS / "figures"
PLOT_DATA = REPORTS / "plots"


# ------------------------------------------------------------------ formatting
def pct(value: float) -> str:
    return f"{100 * value:.1f}"


def with_ci(p: dict) -> str:
    """An accuracy as 'acc [low, high]' in percent (its n is stated with the table)."""
    return f"{pct(p['accuracy'])} [{pct(p['ci95'][0])}, {pct(p['ci95'][1])}]"


def rate_with_ci(rate: float, n: int) -> str:
    """A rate stored as a fraction of n images, with its Wilson interval."""
    k = round(rate * n)
    return with_ci(proportion(np.arange(n) < k))


def markdown(df: pd.DataFrame) -> str:
    return df.to_markdown(disable_numparse=True) + "\n"


def layer_names(params) -> list[str]:
    return [layer_set_name(ls) for ls in params["dknn"]["layer_sets"]]


def paper_cell(values, name: str) -> str:
    """The paper's number for a layer-set row, or '-' where the paper has none."""
    return f"{values[paper.LAYER_SETS.index(name)]:.1f}" if name in paper.LAYER_SETS else "-"


def n_of(cells) -> int:
    return next(iter(cells.values()))["n"]


def save_figure(fig, name: str) -> str:
    path = FIGURES / f"{name}.png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return f"![{name}](figures/{name}.png)\n"


def save_points(name: str, df: pd.DataFrame) -> None:
    """A figure's numbers as CSV, for `dvc plots` (declared in dvc.yaml)."""
    with atomic_path(PLOT_DATA / f"{name}.csv") as tmp:
        df.to_csv(tmp, index=False)


# ------------------------------------------------------------------ inputs
def curve(ax, x, cells: list[dict], label: str) -> None:
    """Accuracies (percent) against x with their 95% Wilson band."""
    ax.plot(x, [100 * c["accuracy"] for c in cells], marker="o", label=label)
    ax.fill_between(x, [100 * c["ci95"][0] for c in cells], [100 * c["ci95"][1] for c in cells], alpha=0.2)


def metrics(kind: str, name: str) -> dict:
    return read_json(METRICS / kind / f"{name}.json")


def outcomes(kind: str, name: str) -> dict:
    """The per-image robust outcomes of a stage (1 = correct clean and under attack)."""
    return read_json(OUTCOMES / kind / f"{name}.json")["robust"]


def clean_correct(cell: dict) -> int:
    """How many images the clean DkNN got right: the denominator of a success rate."""
    return round(cell["clean"]["accuracy"] * cell["clean"]["n"])


def trained_runs(params, method: str, part: str) -> dict[int, tuple[dict, dict]]:
    """Per training seed, the cells and the robust outcomes of evaluate_trained's `part` (ask: Table
    3, pgd: Table 5) for one method."""
    return {s: (metrics("trained", model_name(method, s))[part], outcomes("trained", model_name(method, s))[part])
            for s in params["seeds"]}


def with_seed_ci(m: dict) -> str:
    """A mean over seeds as 'mean [low, high]' (t-interval over seeds), or the mean alone for one seed."""
    if m["ci95"] is None:
        return pct(m["accuracy"])
    return f"{pct(m['accuracy'])} [{pct(m['ci95'][0])}, {pct(m['ci95'][1])}]"


def per_seed_table(params, runs: dict, keys: list[str], label) -> pd.DataFrame:
    """Rows: each method at each seed (Wilson interval) and its mean over seeds (t-interval over
    seeds); columns: `keys` (layer sets or budgets) labelled by `label`."""
    rows = {}
    for m, by_seed in runs.items():
        for s, (cells, _) in by_seed.items():
            rows[f"{METHOD_NAMES[m]}, seed {s}"] = {label(k): with_ci(cells[k]) for k in keys}
        rows[f"{METHOD_NAMES[m]}, mean of {len(by_seed)} seeds"] = {
            label(k): with_seed_ci(seed_mean([cells[k]["accuracy"] for cells, _ in by_seed.values()]))
            for k in keys}
    return pd.DataFrame(rows).T


# ------------------------------------------------------------------ verdicts
class Verdicts:
    """Collects the paired verdicts of the report (written to metrics/verdicts.json).

    A directional verdict is final only when its whole family is known: Holm's correction runs
    within each family (a table, or a group of claims: the part of `source` before any ';'). So
    `claim` and `tally` return placeholders that `finalize` replaces in the finished text."""

    def __init__(self):
        self.records: list[dict] = []
        self.tallies: list[list[int]] = []

    def claim(self, what: str, source: str, a: str, b: str, claim: str) -> str:
        """Test accuracy(a) `claim` (lower | higher) than accuracy(b); a, b: packed outcomes."""
        a_ok, b_ok = unpack(a), unpack(b)
        n = min(len(a_ok), len(b_ok))   # a subset experiment pairs with the first n images
        v = claim_verdict(a_ok[:n], b_ok[:n], claim)
        self.records.append({**v, "direction": v["claim"], "claim": what, "source": source,
                             "family": source.split(";")[0]})
        return f"\x00claim {len(self.records) - 1}\x00"

    def pooled_claim(self, what: str, source: str, pairs: list[tuple[str, str]], claim: str) -> str:
        """Test accuracy(a) `claim` (lower | higher) than accuracy(b) over training seeds; pairs: one
        (a, b) of packed outcomes per seed (`pooled_claim_verdict`)."""
        v = pooled_claim_verdict([(unpack(a), unpack(b)) for a, b in pairs], claim)
        self.records.append({**v, "direction": v["claim"], "claim": what, "source": source,
                             "family": source.split(";")[0]})
        return f"\x00claim {len(self.records) - 1}\x00"

    def within(self, what: str, source: str, a: str, b: str, margin: float) -> str:
        a_ok, b_ok = unpack(a), unpack(b)
        n = min(len(a_ok), len(b_ok))
        v = equivalence_verdict(a_ok[:n], b_ok[:n], margin)
        self.records.append({**v, "claim": what, "source": source})
        return (f"- {what} ({source}): **{v['verdict']}**; difference {100 * v['difference']:+.1f} points, "
                f"paired bootstrap 95% interval [{100 * v['ci95'][0]:+.1f}, {100 * v['ci95'][1]:+.1f}], "
                f"n = {v['n']}\n")

    def tally(self, first: int = 0, records: list[dict] | None = None) -> str:
        chosen = self.records[first:] if records is None else records
        self.tallies.append([next(i for i, r in enumerate(self.records) if r is c) for c in chosen])
        return f"\x00tally {len(self.tallies) - 1}\x00"

    def finalize(self, text: str) -> str:
        """Holm within each family, then the placeholders of `text` replaced by the final lines."""
        families: dict[str, list[int]] = {}
        for i, r in enumerate(self.records):
            if "direction" in r:
                families.setdefault(r["family"], []).append(i)
        for members in families.values():
            adjusted = holm([{**self.records[i], "claim": self.records[i]["direction"]} for i in members])
            for i, v in zip(members, adjusted):
                self.records[i].update(p_holm=v["p_holm"], family_size=v["family_size"], verdict=v["verdict"])
        lines = {"claim": self.claim_line, "tally": self.tally_line}
        return re.sub("\x00(claim|tally) (\\d+)\x00", lambda m: lines[m[1]](int(m[2])), text)

    def claim_line(self, i: int) -> str:
        v = self.records[i]
        if "seeds" in v:
            test = (f"mean difference {100 * v['difference']:+.1f} points (per seed: "
                    + " / ".join(f"{100 * d:+.1f}" for d in v["seed_differences"])
                    + f"), seed-stratified exact McNemar p = {v['p_value']:.2g}")
            n = f"{v['seeds']} seeds, n = {v['n'] // v['seeds']} images each"
        else:
            test = f"difference {100 * v['difference']:+.1f} points, exact McNemar p = {v['p_value']:.2g}"
            n = f"n = {v['n']}"
        return (f"- {v['claim']} ({v['source']}): **{v['verdict']}**; {test}, Holm-adjusted p = {v['p_holm']:.2g} "
                f"({v['family_size']} tests in the family), {n}\n")

    def tally_line(self, k: int) -> str:
        words = [self.records[i]["verdict"].split(" at n")[0] for i in self.tallies[k]]
        return (f"\nOf these {len(words)} tests: {words.count('holds')} hold, {words.count('reversed')} reversed, "
                f"{words.count('not resolved')} not resolved.\n")


# ------------------------------------------------------------------ sections
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
        f"images, where the worst case over all five attacks is reported (Tables 1 and 3).\n"
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


def tuning(params, verdicts) -> str:
    rows = []
    for method, label in METHOD_NAMES.items():
        for c in metrics("tuning", method)["cells"]:
            rows.append({"model": label, "attack": ATTACK_NAMES[c["attack"]], "layers": layer_set_name(c["layers"]),
                         "metric": c["metric"], "chosen": ", ".join(f"{k} = {v}" for k, v in c["chosen"].items()),
                         "on the grid's edge": edge_direction(c), "tuning images": c["images"]})
    on_edge = sum(r["on the grid's edge"] != "no" for r in rows)
    return ("## Tuned hyper-parameters (held-out training images; lowest DkNN accuracy wins)\n\n"
            f"{on_edge} of {len(rows)} choices lie on the edge of their grid: a stronger value may lie beyond it, in "
            "the direction given, so a comparison with that attack may favour the other one. Where the score is "
            "flat across the grid (every entry within a few points; the tuner's curve of each cell is in "
            "`metrics/tuning/<method>.json`), an edge choice says little.\n\n"
            + markdown(pd.DataFrame(rows).set_index("model")))


def worst_of(outcome_strings, n: int) -> np.ndarray:
    """Per image of the first n: robust (1) only if every attack failed on it."""
    return np.logical_and.reduce([unpack(o)[:n] for o in outcome_strings])


def table1_worst_case(outs: dict, name: str, n: int) -> str:
    """Packed worst case over the whole suite, for one layer set of Table 1 (first n images)."""
    return pack(worst_of([outs[a][name]["start_0"] for a in SUITE], n))


def table1(params, verdicts) -> str:
    names = layer_names(params)
    starts, n_worst = params["attacks"]["random_starts"], params["attacks"]["worst_case_size"]
    out = [f"## Table 1: DkNN accuracy under attack, AT model (lower = stronger attack)\n\n"
           f"ASK-APGD and SW20 (beyond the paper) run on the first {n_worst} images; the worst case counts an "
           f"image as robust only if all five attacks fail on it, on those {n_worst} images.\n"]
    lines, stronger, timing, paper_records, stronger_records, sw20_records = [], [], {}, [], [], []
    for metric in params["dknn"]["metrics"]:
        cells = {a: metrics("attack", f"{a}_{metric}")["layer_sets"] for a in SUITE}
        outs = {a: outcomes("attack", f"{a}_{metric}") for a in SUITE}
        rows = {}
        for name in names:
            ask = cells["ask"][name]
            row = {"ASK-Atk": with_ci(ask)}
            if "worst_case" in ask:
                accs = [s["accuracy"] for s in ask["starts"]]
                row[f"ASK-Atk, each of {starts} starts (first {ask['worst_case']['n']})"] = \
                    " / ".join(pct(a) for a in accs)
                row[f"worst of {starts} starts (first {ask['worst_case']['n']})"] = with_ci(ask["worst_case"])
            row["ASK-Atk (paper)"] = paper_cell(paper.TABLE1[metric]["ask"], name)
            for a in ("advknn", "dknn_atk"):
                row[ATTACK_NAMES[a]] = with_ci(cells[a][name])
                row[f"{ATTACK_NAMES[a]} (paper)"] = paper_cell(paper.TABLE1[metric][a], name)
                lines.append(verdicts.claim(f"ASK-Atk lower than {ATTACK_NAMES[a]}, {name}, {metric}",
                                            "paper Table 1: ASK-Atk is the strongest attack",
                                            outs["ask"][name]["start_0"], outs[a][name]["start_0"], "lower"))
                paper_records.append(verdicts.records[-1])
            worst = table1_worst_case(outs, name, n_worst)
            row[f"ASK-Atk (first {n_worst})"] = with_ci(proportion(unpack(outs["ask"][name]["start_0"])[:n_worst]))
            for a in ("ask_apgd", "sw20"):
                row[ATTACK_NAMES[a]] = with_ci(cells[a][name])
            row["worst case, all 5 attacks"] = with_ci(proportion(unpack(worst)))
            equal = cells["ask_apgd"][name]["equal_passes"]
            row[f"ASK-APGD, {equal['passes']} passes as ASK-Atk"] = with_ci(equal)
            for label, packed in (("ASK-APGD", outs["ask_apgd"][name]["start_0"]),
                                  (f"ASK-APGD at {equal['passes']} passes", outs["ask_apgd"][name]["equal_passes"])):
                stronger.append(verdicts.claim(f"{label} lower than ASK-Atk, {name}, {metric}",
                                               "beyond the paper: a stronger evaluation", packed,
                                               outs["ask"][name]["start_0"], "lower"))
                stronger_records.append(verdicts.records[-1])
            drop = unpack(outs["ask"][name]["start_0"])[:n_worst].mean() - unpack(worst).mean()
            stronger.append(f"- the worst case over all five attacks, {name}, {metric}: {100 * drop:.1f} points below "
                            f"ASK-Atk (a number: the worst case includes ASK-Atk)\n")
            stronger.append(verdicts.claim(f"SW20 lower than DkNN-Atk, {name}, {metric}",
                                           "Sitawarin & Wagner 2020: SW20 beats their 2019 attack",
                                           outs["sw20"][name]["start_0"], outs["dknn_atk"][name]["start_0"], "lower"))
            sw20_records.append(verdicts.records[-1])
            rows[name] = row
        timing.update({(ATTACK_NAMES[a], metric): np.mean([c["seconds_per_image"] for c in cells[a].values()])
                       for a in SUITE})
        out.append(f"\n### {metric} similarity (n = {n_of(cells['ask'])}; clean DkNN accuracy: "
                   + ", ".join(f"{n} {with_ci(cells['ask'][n]['clean'])}" for n in names) + ")\n\n")
        out.append(markdown(pd.DataFrame(rows).T))
        success = pd.DataFrame({ATTACK_NAMES[a]: {n: rate_with_ci(cells[a][n]["success_rate"],
                                                                  clean_correct(cells[a][n]))
                                                  for n in names} for a in SUITE})
        out.append("\nAttack success rate (%) on the images the clean DkNN classifies correctly (ASK-APGD and SW20: "
                   f"first {n_worst}):\n\n" + markdown(success))
    out.append("\nPaired verdicts (ASK-Atk's first start against each baseline, same images):\n\n" + "".join(lines)
               + verdicts.tally(records=paper_records))
    out.append(f"\nBeyond the paper (paired on the first {n_worst} images; the goal is {GOAL_POINTS} points below "
               f"ASK-Atk on the AT model):\n\n" + "".join(stronger)
               + verdicts.tally(records=stronger_records + sw20_records)
               + goal_statement(stronger_records))
    ask_time = {m: timing[("ASK-Atk", m)] for m in params["dknn"]["metrics"]}
    df = pd.DataFrame({f"{a} ({m})": {"ms per image": f"{1000 * t:.2f}", "time / ASK-Atk's": f"{t / ask_time[m]:.2f}"}
                       for (a, m), t in timing.items()}).T
    apgd = params["attacks"]["ask_apgd"]
    out.append(f"\n### Attack time (mean over layer sets; ASK-Atk, DkNN-Atk, AdvKnn, SW20: "
               f"{params['attacks']['steps']} steps; ASK-APGD: up to {apgd['restarts']} runs of {apgd['steps']} steps, "
               f"each run only on the images "
               f"the DkNN still classifies correctly; paper: ASK-Atk about {paper.SPEEDUP}x faster with the "
               f"baselines' own budgets)\n\n" + markdown(df))
    return "".join(out)


def goal_statement(records: list[dict]) -> str:
    """Whether the stronger evaluations reached GOAL_POINTS below ASK-Atk, per comparison."""
    gains = [(r["claim"], -100 * r["difference"]) for r in records]
    reached = [c for c, g in gains if g >= GOAL_POINTS]
    best = max(gains, key=lambda cg: cg[1])
    return (f"\nGoal of {GOAL_POINTS} points below ASK-Atk: reached in {len(reached)} of {len(gains)} comparisons; "
            f"the largest drop is {best[1]:.1f} points ({best[0]}); the smallest "
            f"{min(g for _, g in gains):.1f}.\n")


def credibility(params, verdicts) -> str:
    """Papernot & McDaniel's credibility as a detector of the adversarial examples of Table 1."""
    rows = {}
    for metric in params["dknn"]["metrics"]:
        for a in SUITE:
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


def advknn_block(params, verdicts) -> str:
    rows, n_val = {}, metrics("", "data")["val_images"]
    for method, metric in [("at", m) for m in params["dknn"]["metrics"]] + [(m, "cosine") for m in METHOD_NAMES
                                                                           if m != "at"]:
        blocks = metrics("advknn", f"{method}_{metric}")
        for block in ("single", "multi"):
            rows[f"{METHOD_NAMES[method]}, {metric}, lambda = {blocks[block]['lam']:g} ({block}-layer attacks)"] = {
                layer: rate_with_ci(v, n_val) for layer, v in blocks[block]["agreement_with_knn"].items()}
    return (f"## AdvKnn's deep kNN blocks: agreement (%) with the real kNN on held-out images (n = {n_val})\n\n"
            + markdown(pd.DataFrame(rows).T))


def eps_curves(params, verdicts) -> str:
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    points = {"ask": metrics("defense", "at")["eps_curve"],
              **{a: metrics("eps_sweep", a)["points"] for a in ("advknn", "dknn_atk")}}
    eps = sorted(points["ask"], key=int)
    rows, curves = {}, {}
    for a in ATTACKS:
        curves[ATTACK_NAMES[a]] = [100 * points[a][e]["accuracy"] for e in eps]
        curve(ax, [int(e) for e in eps], [points[a][e] for e in eps], ATTACK_NAMES[a])
        rows[ATTACK_NAMES[a]] = {f"eps {e}": with_ci(points[a][e]) for e in eps}
    save_points("figure1_left", pd.DataFrame({"eps": [int(e) for e in eps], **curves}))
    layers = layer_set_name(params["experiments"]["sweep_layers"])
    ax.set(title=f"DkNN ({layers}, cosine) under attack", xlabel="eps (/255)", ylabel="accuracy %")
    ax.legend()
    return (f"## Figure 1 (left): DkNN accuracy of the AT model against the budget ({layers}, "
            f"n = {n_of(points['ask'])}, step = {params['attacks']['step_fraction']} x eps; bands: 95% Wilson "
            f"intervals)\n\n"
            + markdown(pd.DataFrame(rows).T) + "\n" + save_figure(fig, "figure1_left_attacks"))


def appendix(name: str) -> tuple[dict, dict]:
    return metrics("ask_appendix", name)["cells"], outcomes("ask_appendix", name)


def table6(params, verdicts) -> str:
    names, (targeted, t_out) = layer_names(params), appendix("targeted")
    plain, p_out = metrics("attack", "ask_l2")["layer_sets"], outcomes("attack", "ask_l2")
    df = pd.DataFrame({n: {"non-targeted (Table 1)": with_ci(plain[n]), "targeted": with_ci(targeted[n]),
                           "non-targeted (paper)": paper_cell(paper.TABLE1["l2"]["ask"], n),
                           "targeted (paper)": paper_cell(paper.TABLE6_TARGETED, n)} for n in names}).T
    lines = "".join(verdicts.within(f"targeted within 3 points of non-targeted, {n}", "paper Table 6",
                                    t_out[n], p_out[n]["start_0"], 0.03) for n in names)
    return (f"## Table 6: targeted (nearest class) against non-targeted ASK-Atk, l2 (targeted: n = "
            f"{n_of(targeted)}, paired with the same first images of Table 1)\n\n" + markdown(df) + "\n" + lines)


def table7(params, verdicts) -> str:
    names, (rand, r_out) = layer_names(params), appendix("random_negatives")
    knn = metrics("attack", "ask_cosine")["layer_sets"]
    others = {a: metrics("attack", f"{a}_cosine")["layer_sets"] for a in ("advknn", "dknn_atk")}
    o_out = {a: outcomes("attack", f"{a}_cosine") for a in ("ask", "advknn", "dknn_atk")}
    df = pd.DataFrame({n: {"X- by kNN search (Table 1)": with_ci(knn[n]), "X- at random": with_ci(rand[n]),
                           **{ATTACK_NAMES[a]: with_ci(c[n]) for a, c in others.items()}} for n in names}).T
    lines = "".join(verdicts.claim(f"random-X- ASK-Atk lower than {ATTACK_NAMES[a]}, {n}", "paper Table 7",
                                   r_out[n], o_out[a][n]["start_0"], "lower")
                    for n in names for a in ("advknn", "dknn_atk"))
    return (f"## Table 7: ASK-Atk with X- drawn at random (X+ by kNN search), cosine (random X-: n = "
            f"{n_of(rand)}; the other columns: Table 1, n = {n_of(knn)}; verdicts pair the first "
            f"{n_of(rand)} images)\n\n" + markdown(df) + "\n" + lines)


def table8(params, verdicts) -> str:
    names, (cells, outs) = layer_names(params), appendix("cross_layers")
    df = pd.DataFrame({f"ASK-Atk on {a}": {f"DkNN on {d}": with_ci(cells[a][d]) for d in names} for a in names})
    ref = pd.DataFrame({f"ASK-Atk on {a}": {f"DkNN on {d}": paper_cell(paper.TABLE8[d], a) for d in names
                                            if d in paper.TABLE8} for a in names})
    single = [n for n in names if "+" not in n]
    lines = "".join(verdicts.claim(f"DkNN on {d}: attacking {d} lower than attacking {a}", "paper Table 8",
                                   outs[d][d], outs[a][d], "lower") for d in single for a in single if a != d)
    return (f"## Table 8: attacked layers against DkNN layers (gray box, n = {n_of(cells[names[0]])})\n\n"
            + markdown(df) + "\nPaper (CIFAR-10):\n\n" + markdown(ref) + "\n" + lines)


def table9(params, verdicts) -> str:
    (cells, outs), exp = appendix("k_pos_neg"), params["experiments"]
    df = pd.DataFrame({f"K+ = {kp}": {f"K- = {kn}": with_ci(cells[str(kp)][str(kn)])
                                      for kn in exp["k_neg_values"]} for kp in exp["k_pos_values"]}).T
    ref = pd.DataFrame({f"K+ = {kp}": dict(zip((f"K- = {kn}" for kn in (1, 3, 5, 7, 9)), v))
                        for kp, v in paper.TABLE9.items()}).T
    layers = layer_set_name(exp["sweep_layers"])
    smallest = str(min(exp["k_neg_values"]))
    default = str(params["attacks"]["ask"]["k_neg"])
    lines = "".join(verdicts.claim(f"K+ = {kp}: K- = {default} lower than K- = {smallest}",
                                   "paper Table 9: more negatives per class give a stronger attack",
                                   outs[str(kp)][default], outs[str(kp)][smallest], "lower")
                    for kp in exp["k_pos_values"]) if default in map(str, exp["k_neg_values"]) else ""
    return (f"## Table 9: K+ against K- ({layers}; DkNN K = K+; n = {n_of(cells[str(exp['k_pos_values'][0])])})\n\n"
            + markdown(df) + "\nPaper (CIFAR-10, conv4):\n\n" + markdown(ref) + "\n" + lines)


def figure4(params, verdicts) -> str:
    exp = params["experiments"]
    tau_k, _ = appendix("tau_k")
    attacker, _ = appendix("attacker_k")
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for tau in exp["tau_values"]:
        curve(axes[0], exp["k_values"], [tau_k[str(tau)][str(k)] for k in exp["k_values"]], f"tau = {tau}")
    for k_att in exp["k_values"]:
        curve(axes[1], exp["k_values"], [attacker[str(k_att)][str(k)] for k in exp["k_values"]],
              f"attacker K = {k_att}")
    axes[0].set(title="K of attack = K of DkNN", xlabel="K", ylabel="DkNN accuracy %")
    axes[1].set(title="gray box: attacker's K", xlabel="DkNN's K", ylabel="DkNN accuracy %")
    for ax in axes:
        ax.legend(fontsize=7)
    df = pd.DataFrame({f"attacker K = {a}": {f"DkNN K = {k}": with_ci(attacker[str(a)][str(k)])
                                             for k in exp["k_values"]} for a in exp["k_values"]})
    n = n_of(attacker[str(exp["k_values"][0])])
    return (f"## Figure 4: sensitivity of ASK-Atk to the temperature and to K (n = {n}; bands: 95% Wilson "
            f"intervals)\n\n" + save_figure(fig, "figure4")
            + "\n" + markdown(df))


DEFENSE_CLAIMS = [  # (a, b, claim, what is checked)
    ("askdef", "at", "paper: ASK-Def is more robust than AT"),
    ("askdef", "atsnn", "paper: ASK-Def is more robust than AT+SNN"),
    ("atsnn", "at", "AT+SNN against AT, on its own line: not a claim of the paper's text"),
    ("askdef", "at_wide", "control: the ASK term, not G2's larger budget"),
]


def defense_verdicts(verdicts, source: str, row: str, outs: dict) -> str:
    """The training-method claims on one row; outs: per method, per training seed, packed outcomes."""
    return "".join(verdicts.pooled_claim(f"{METHOD_NAMES[a]} above {METHOD_NAMES[b]}, {row}", f"{source}; {what}",
                                         [(outs[a][s], outs[b][s]) for s in outs[a]], "higher")
                   for a, b, what in DEFENSE_CLAIMS)


def seeds_note(params) -> str:
    seeds = params["seeds"]
    if len(seeds) == 1:
        return (f"One training run per method (seed {seeds[0]}): its verdicts on training methods rest on one run "
                f"and carry no training variance.")
    return (f"Every method trained under {len(seeds)} seeds ({', '.join(map(str, seeds))}), each with the "
            f"hyper-parameters tuned on its seed-{seeds[0]} model. Rows: each seed (95% Wilson interval, n images) "
            f"and the mean over seeds (95% t-interval over the {len(seeds)} seeds). A verdict pools the seeds: "
            f"seed-stratified exact McNemar test (each seed's model of one method paired with the same seed's "
            f"model of the other, on the same images), Holm within the table, and `holds` only if every seed's "
            f"difference also has the claimed sign.")


def defense_tables(params, verdicts) -> str:
    names, first = layer_names(params), len(verdicts.records)
    t3 = {m: trained_runs(params, m, "ask") for m in METHOD_NAMES}
    ref3 = pd.DataFrame({METHOD_NAMES[m]: {n: paper_cell(paper.TABLE3[m], n) for n in names}
                         for m in METHOD_NAMES if m in paper.TABLE3})
    lines3 = "".join(defense_verdicts(verdicts, "paper Table 3", n,
                                      {m: {s: o[n] for s, (_, o) in runs.items()} for m, runs in t3.items()})
                     for n in names)
    tally3, first5 = verdicts.tally(first), len(verdicts.records)
    t5 = {m: trained_runs(params, m, "pgd") for m in METHOD_NAMES}
    eps_list = [str(e) for e in params["experiments"]["pgd_eps"]]
    ref5 = pd.DataFrame({METHOD_NAMES[m]: dict(zip(("eps 0", "eps 4", "eps 6", "eps 8"), paper.TABLE5[m]))
                         for m in METHOD_NAMES if m in paper.TABLE5}).T
    lines5 = "".join(defense_verdicts(verdicts, "paper Table 5", f"eps {e}",
                                      {m: {s: o[e] for s, (_, o) in runs.items()} for m, runs in t5.items()})
                     for e in eps_list if e != "0")
    exp, seed0 = params["experiments"], params["seeds"][0]
    n3, n5 = n_of(t3["at"][seed0][0]), t5["at"][seed0][0][eps_list[0]]["n"]
    return (f"## Table 3: DkNN accuracy under ASK-Atk (eps {params['eps']}, cosine) of each training method "
            f"(n = {n3} per seed)\n\n{seeds_note(params)}\n\n"
            + markdown(per_seed_table(params, t3, names, str)) + "\nPaper (CIFAR-10):\n\n" + markdown(ref3) + "\n"
            + lines3 + tally3
            + f"\n## Table 5: DNN accuracy under PGD ({exp['pgd_steps']} steps of "
            f"{params['attacks']['step_fraction']} x eps, {exp['pgd_restarts']} restart(s), n = {n5} per seed)\n\n"
            + markdown(per_seed_table(params, t5, eps_list, lambda e: f"eps {e}"))
            + "\nPaper (CIFAR-10, eps 0/4/6/8):\n\n" + markdown(ref5) + "\n" + lines5 + verdicts.tally(first5))


def stronger_cells(params, method: str, n: int) -> dict:
    """Per layer set: packed outcomes of ASK-Atk (first n), ASK-APGD and the worst case of a model's
    first-seed model (cosine), and the cost of the worst case's cascade (None for the AT model:
    Table 1's runs)."""
    if method == "at":
        outs = {a: outcomes("attack", f"{a}_cosine") for a in SUITE}
        return {name: {"ask": pack(unpack(o["start_0"])[:n]), "ask_apgd": outs["ask_apgd"][name]["start_0"],
                       "worst_case": table1_worst_case(outs, name, n), "cascade": None}
                for name, o in outs["ask"].items()}
    m, o = metrics("defense", method), outcomes("defense", method)
    ask = outcomes("trained", model_name(method, params["seeds"][0]))["ask"]
    return {name: {"ask": pack(unpack(ask[name])[:n]), "ask_apgd": o["ask_apgd"][name],
                   "worst_case": o["worst_case"][name], "cascade": m["worst_case"][name]["cascade"]}
            for name in ask}


def stronger_defense_table(params, verdicts) -> str:
    names, first, n = layer_names(params), len(verdicts.records), params["attacks"]["worst_case_size"]
    cells = {m: stronger_cells(params, m, n) for m in METHOD_NAMES}
    columns = {"ask": "ASK-Atk", "ask_apgd": "ASK-APGD", "worst_case": "worst case"}
    df = pd.DataFrame({f"{METHOD_NAMES[m]}: {label}": {name: with_ci(proportion(unpack(c[name][key])))
                                                      for name in names}
                       for m, c in cells.items() for key, label in columns.items()}).T
    lines = "".join(verdicts.claim(f"{METHOD_NAMES[m]}: ASK-APGD lower than ASK-Atk, {name}",
                                   "beyond the paper: a stronger evaluation", c[name]["ask_apgd"], c[name]["ask"],
                                   "lower") for m, c in cells.items() for name in names)
    worst = {m: {name: unpack(c[name]["worst_case"]).mean() for name in names} for m, c in cells.items()}
    gaps = pd.DataFrame({f"{METHOD_NAMES[a]} - {METHOD_NAMES[b]}": {
        name: f"{100 * (worst[a][name] - worst[b][name]):+.1f}" for name in names} for a, b, _ in DEFENSE_CLAIMS}).T
    cost = {}
    for m, c in cells.items():
        for name in names:
            for attack, run in (c[name]["cascade"] or {}).items():
                cost[f"{METHOD_NAMES[m]}, {name}, {ATTACK_NAMES[attack]}"] = {
                    "images attacked": run["images"], "of which fooled": run["fooled"],
                    "ms per image": f"{1000 * run['seconds_per_image']:.2f}"}
    return (f"## Table 3 under stronger attacks: ASK-APGD and the worst case over all five attacks (cosine, "
            f"first {n} images, seed-{params['seeds'][0]} models)\n\nThe AT model's worst case is Table 1's. For the "
            f"other models ASK-Atk and ASK-APGD run on every image; DkNN-Atk, SW20 and AdvKnn (each with the model's "
            f"own tuning and kNN block) then run in turn on the images that every earlier attack failed on "
            f"(AutoAttack's cascade), so an image counts as robust only if all five fail.\n\n" + markdown(df) + "\n"
            + lines + verdicts.tally(first)
            + f"\nThe training methods under the worst case, as differences in points (one training run each, seed "
              f"{params['seeds'][0]}: numbers, not verdicts; the verdicts on training methods are Table 3's, over "
              f"every seed):\n\n" + markdown(gaps)
            + "\nCost of the cascade (after ASK-Atk and ASK-APGD):\n\n"
            + (markdown(pd.DataFrame(cost).T) if cost else "none\n"))


def defense_figures(params, verdicts) -> str:
    exp = params["experiments"]
    runs = {m: metrics("defense", m) for m in METHOD_NAMES}
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    eps = sorted(runs["at"]["eps_curve"], key=int)
    by_eps = pd.DataFrame({"eps": [int(e) for e in eps], **{METHOD_NAMES[m]: [100 * r["eps_curve"][e]["accuracy"]
                                                                            for e in eps] for m, r in runs.items()}})
    by_k = pd.DataFrame({"K": exp["k_values"], **{METHOD_NAMES[m]: [100 * r["k_curve"][str(k)]["accuracy"]
                                                                  for k in exp["k_values"]] for m, r in runs.items()}})
    for m, r in runs.items():
        curve(axes[0], by_eps.eps, [r["eps_curve"][e] for e in eps], METHOD_NAMES[m])
        curve(axes[1], by_k.K, [r["k_curve"][str(k)] for k in exp["k_values"]], METHOD_NAMES[m])
    save_points("figure1_right", by_eps)
    save_points("figure5", by_k)
    layers = layer_set_name(exp["sweep_layers"])
    axes[0].set(title=f"Figure 1 right: ASK-Atk on {layers}", xlabel="eps (/255)", ylabel="DkNN accuracy %")
    axes[1].set(title=f"Figure 5: ASK-Atk against K ({layers})", xlabel="K", ylabel="DkNN accuracy %")
    for ax in axes:
        ax.legend(fontsize=7)
    table = pd.DataFrame({METHOD_NAMES[m]: {**{f"eps {e}": with_ci(r["eps_curve"][e]) for e in eps},
                                            **{f"K = {k}": with_ci(r["k_curve"][str(k)]) for k in exp["k_values"]}}
                          for m, r in runs.items()}).T
    return (f"## Figures 1 (right) and 5: robustness of the trained models (n = {n_of(runs['at']['eps_curve'])}; "
            f"bands: 95% Wilson intervals)\n\n"
            + save_figure(fig, "defense_curves") + "\n" + markdown(table))


SECTIONS = [setup, clean_accuracy, training, tuning, table1, credibility, advknn_block, eps_curves, table6, table7,
            table8, table9, figure4, defense_tables, stronger_defense_table, defense_figures]


def build_report(params) -> tuple[str, list[dict]]:
    """The Markdown report and the list of its paired verdicts."""
    verdicts = Verdicts()
    body = verdicts.finalize("\n".join(section(params, verdicts) for section in SECTIONS))
    return ("# Results\n\nGenerated by `dvc repro` (stage `report`) from `metrics/` and `outcomes/`; do not edit "
            "by hand.\n\n" + body), verdicts.records
