"""Paper-style Markdown tables and PNG figures from the metrics JSON.

Each report section is a function (params -> Markdown) in SECTIONS; it reads the metrics files
named by the parameter lists (methods, attacks, layer sets), never by listing a folder. To add a
table, write one such function and append it to SECTIONS.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from askknn import paper  # noqa: E402
from askknn.io import atomic_path, read_json  # noqa: E402
from askknn.runtime import METRICS, PLOTS, REPORTS, layer_set_name  # noqa: E402

METHOD_NAMES = {"at": "AT", "askdef": "ASK-Def", "atsnn": "AT+SNN"}
ATTACK_NAMES = {"ask": "ASK-Atk", "advknn": "AdvKnn", "dknn_atk": "DkNN-Atk"}
ATTACKS = ("ask", "advknn", "dknn_atk")
FIGURES = REPORTS / "figures"
PLOT_DATA = REPORTS / "plots"


def pct(value: float) -> str:
    return f"{100 * value:.1f}"


def markdown(df: pd.DataFrame) -> str:
    return df.to_markdown(disable_numparse=True) + "\n"


def layer_names(params) -> list[str]:
    return [layer_set_name(ls) for ls in params["dknn"]["layer_sets"]]


def paper_cell(values, name: str) -> str:
    """The paper's number for a layer-set row, or '-' where the paper has none."""
    return f"{values[paper.LAYER_SETS.index(name)]:.1f}" if name in paper.LAYER_SETS else "-"


def verdict(holds: int, total: int, claim: str) -> str:
    word = "holds" if holds == total else ("holds partly" if holds else "does not hold")
    return f"\n**Paper's claim ({claim}) {word} on this preset: {holds} of {total} rows.**\n"


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


# ------------------------------------------------------------------ sections
def setup(params) -> str:
    data, clean = read_json(METRICS / "data.json"), read_json(METRICS / "clean" / "at.json")
    return (f"Preset `{params['preset']}`: {data['dataset']}, model `{params['model']['name']}`, "
            f"{data['train_images']} training images, bank of {data['bank_images']}, {data['eval_images']} "
            f"evaluation images, DkNN K = {params['dknn']['k']}. AT budget {params['train']['eps']}/255; "
            f"attack budget eps = {params['eps']}/255, {params['attacks']['steps']} steps of "
            f"{params['attacks']['step_size']}/255. Accuracies in percent. The paper's numbers are for "
            f"CIFAR-10 (VGG16-BN, AT at 4/255, attacks at 8/255) and are shown for reference only.\n\n"
            f"AT model: DNN clean accuracy {pct(clean['dnn_accuracy'])}.\n")


def clean_accuracy(params) -> str:
    rows = {}
    for method in METHOD_NAMES:
        m = read_json(METRICS / "clean" / f"{method}.json")
        row = {"DNN": pct(m["dnn_accuracy"])}
        for metric in params["dknn"]["metrics"]:
            row.update({f"DkNN {name} ({metric})": pct(m["dknn_accuracy"][metric][name])
                        for name in layer_names(params)})
        rows[METHOD_NAMES[method]] = row
    return "## Clean accuracy\n\n" + markdown(pd.DataFrame(rows).T)


def training(params) -> str:
    rows = {METHOD_NAMES[m]: read_json(METRICS / "train" / f"{m}.json") for m in METHOD_NAMES}
    df = pd.DataFrame({name: {"epochs": r["epochs"], "held-out clean acc.": pct(r["val_clean_accuracy"]),
                              "held-out PGD acc.": pct(r["val_pgd_accuracy"]),
                              "seconds per epoch": f"{r['epoch_seconds']:.1f}",
                              "epoch time / AT's": f"{r['epoch_seconds'] / rows['AT']['epoch_seconds']:.2f}"}
                       for name, r in rows.items()}).T
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for method, name in METHOD_NAMES.items():
        curve = pd.read_csv(PLOTS / f"train_{method}.csv")
        axes[0].plot(curve.epoch, 100 * curve.val_clean_accuracy, marker="o", label=name)
        axes[1].plot(curve.epoch, 100 * curve.val_pgd_accuracy, marker="o", label=name)
    for ax, title in zip(axes, ("held-out clean accuracy", f"held-out PGD accuracy (eps {params['train']['eps']})")):
        ax.set(title=title, xlabel="epoch", ylabel="%")
        ax.legend()
    return ("## Training (selection on held-out training data only; the test set is never used)\n\n"
            + markdown(df) + "\n" + save_figure(fig, "training_curves"))


def table1(params) -> str:
    names, out = layer_names(params), ["## Table 1: DkNN accuracy under attack, AT model (lower = stronger attack)\n"]
    holds = total = 0
    timing = {}
    for metric in params["dknn"]["metrics"]:
        cells = {a: read_json(METRICS / "attack" / f"{a}_{metric}.json")["layer_sets"] for a in ATTACKS}
        rows = {}
        for name in names:
            row = {}
            for a in ATTACKS:
                row[ATTACK_NAMES[a]] = pct(cells[a][name]["accuracy"])
                row[f"{ATTACK_NAMES[a]} (paper)"] = paper_cell(paper.TABLE1[metric][a], name)
            rows[name] = row
            best = min(ATTACKS, key=lambda a: cells[a][name]["accuracy"])
            holds, total = holds + (best == "ask"), total + 1
        timing.update({(ATTACK_NAMES[a], metric): sum(c["seconds_per_image"] for c in cells[a].values()) / len(names)
                       for a in ATTACKS})
        out.append(f"\n### {metric} similarity (clean DkNN accuracy: "
                   + ", ".join(f"{n} {pct(cells['ask'][n]['clean_accuracy'])}" for n in names) + ")\n\n")
        out.append(markdown(pd.DataFrame(rows).T))
        success = pd.DataFrame({ATTACK_NAMES[a]: {n: pct(cells[a][n]["success_rate"]) for n in names} for a in ATTACKS})
        out.append("\nAttack success rate on the images the clean DkNN classifies correctly:\n\n" + markdown(success))
        tuned = "; ".join(f"{n}: {cells['ask'][n]['chosen']}" for n in names)
        out.append(f"\nASK-Atk hyper-parameters chosen on the first batch: {tuned}.\n")
    out.append(verdict(holds, total, "ASK-Atk strongest"))
    ask_time = {m: timing[("ASK-Atk", m)] for m in params["dknn"]["metrics"]}
    df = pd.DataFrame({f"{a} ({m})": {"ms per image": f"{1000 * t:.2f}", "time / ASK-Atk's": f"{t / ask_time[m]:.2f}"}
                       for (a, m), t in timing.items()}).T
    out.append(f"\n### Attack time (mean over layer sets; paper: ASK-Atk about {paper.SPEEDUP}x faster)\n\n"
               + markdown(df))
    return "".join(out)


def advknn_block(params) -> str:
    rows = {metric: {layer: pct(v) for layer, v in read_json(METRICS / "advknn" / f"{metric}.json")
                     ["agreement_with_knn"].items()} for metric in params["dknn"]["metrics"]}
    return ("## AdvKnn's deep kNN block: agreement with the real kNN on held-out images\n\n"
            + markdown(pd.DataFrame(rows).T))


def eps_curves(params) -> str:
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    rows, curves = {}, {}
    for a in ATTACKS:
        points = read_json(METRICS / "eps_sweep" / f"{a}.json")["points"]
        eps = sorted(points, key=int)
        curves[ATTACK_NAMES[a]] = [100 * points[e]["accuracy"] for e in eps]
        ax.plot([int(e) for e in eps], curves[ATTACK_NAMES[a]], marker="o", label=ATTACK_NAMES[a])
        rows[ATTACK_NAMES[a]] = {f"eps {e}": pct(points[e]["accuracy"]) for e in eps}
    save_points("figure1_left", pd.DataFrame({"eps": [int(e) for e in eps], **curves}))
    layers = layer_set_name(params["experiments"]["sweep_layers"])
    ax.set(title=f"DkNN ({layers}, cosine) under attack", xlabel="eps (/255)", ylabel="accuracy %")
    ax.legend()
    return (f"## Figure 1 (left): DkNN accuracy of the AT model against the budget ({layers})\n\n"
            + markdown(pd.DataFrame(rows).T) + "\n" + save_figure(fig, "figure1_left_attacks"))


def appendix(name: str):
    return read_json(METRICS / "ask_appendix" / f"{name}.json")["cells"]


def table6(params) -> str:
    names, targeted = layer_names(params), appendix("targeted")
    plain = read_json(METRICS / "attack" / "ask_l2.json")["layer_sets"]
    df = pd.DataFrame({n: {"non-targeted": pct(plain[n]["accuracy"]), "targeted": pct(targeted[n]["accuracy"]),
                           "non-targeted (paper)": paper_cell(paper.TABLE1["l2"]["ask"], n),
                           "targeted (paper)": paper_cell(paper.TABLE6_TARGETED, n)} for n in names}).T
    close = sum(abs(targeted[n]["accuracy"] - plain[n]["accuracy"]) <= 0.03 for n in names)
    return ("## Table 6: targeted (nearest class) against non-targeted ASK-Atk, l2\n\n" + markdown(df)
            + verdict(close, len(names), "targeted within 3 points of non-targeted"))


def table7(params) -> str:
    names, rand = layer_names(params), appendix("random_negatives")
    knn = read_json(METRICS / "attack" / "ask_cosine.json")["layer_sets"]
    others = {a: read_json(METRICS / "attack" / f"{a}_cosine.json")["layer_sets"] for a in ("advknn", "dknn_atk")}
    df = pd.DataFrame({n: {"X- by kNN search": pct(knn[n]["accuracy"]), "X- at random": pct(rand[n]["accuracy"]),
                           **{ATTACK_NAMES[a]: pct(c[n]["accuracy"]) for a, c in others.items()}} for n in names}).T
    holds = sum(rand[n]["accuracy"] <= min(c[n]["accuracy"] for c in others.values()) for n in names)
    return ("## Table 7: ASK-Atk with X- drawn at random, cosine\n\n" + markdown(df)
            + verdict(holds, len(names), "random-X- ASK-Atk still beats AdvKnn and DkNN-Atk"))


def table8(params) -> str:
    names, cells = layer_names(params), appendix("cross_layers")
    df = pd.DataFrame({f"ASK-Atk on {a}": {f"DkNN on {d}": pct(cells[a][d]["accuracy"]) for d in names}
                       for a in names})
    ref = pd.DataFrame({f"ASK-Atk on {a}": {f"DkNN on {d}": paper_cell(paper.TABLE8[d], a) for d in names
                                            if d in paper.TABLE8} for a in names})
    single = [n for n in names if "+" not in n]
    own = sum(cells[d][d]["accuracy"] <= min(cells[a][d]["accuracy"] for a in single) for d in single)
    return ("## Table 8: attacked layers against DkNN layers (gray box)\n\n" + markdown(df)
            + "\nPaper (CIFAR-10):\n\n" + markdown(ref)
            + verdict(own, len(single), "a single-layer DkNN is hit hardest by attacking its own layer"))


def table9(params) -> str:
    cells, exp = appendix("k_pos_neg"), params["experiments"]
    df = pd.DataFrame({f"K+ = {kp}": {f"K- = {kn}": pct(cells[str(kp)][str(kn)]["accuracy"])
                                      for kn in exp["k_neg_values"]} for kp in exp["k_pos_values"]}).T
    ref = pd.DataFrame({f"K+ = {kp}": dict(zip((f"K- = {kn}" for kn in (1, 3, 5, 7, 9)), v))
                        for kp, v in paper.TABLE9.items()}).T
    layers = layer_set_name(exp["sweep_layers"])
    stronger = sum(min(cells[str(kp)][str(kn)]["accuracy"] for kn in exp["k_neg_values"] if kn >= 3)
                   < cells[str(kp)][str(min(exp["k_neg_values"]))]["accuracy"] for kp in exp["k_pos_values"])
    return (f"## Table 9: K+ against K- ({layers}; DkNN K = K+)\n\n" + markdown(df)
            + "\nPaper (CIFAR-10, conv4):\n\n" + markdown(ref)
            + verdict(stronger, len(exp["k_pos_values"]), "some K- >= 3 is stronger than the smallest K-"))


def figure4(params) -> str:
    exp = params["experiments"]
    tau_k, attacker = appendix("tau_k"), appendix("attacker_k")
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for tau in exp["tau_values"]:
        axes[0].plot(exp["k_values"], [100 * tau_k[str(tau)][str(k)]["accuracy"] for k in exp["k_values"]],
                     marker="o", label=f"tau = {tau}")
    for k_att in exp["k_values"]:
        axes[1].plot(exp["k_values"], [100 * attacker[str(k_att)][str(k)]["accuracy"] for k in exp["k_values"]],
                     marker="o", label=f"attacker K = {k_att}")
    axes[0].set(title="K of attack = K of DkNN", xlabel="K", ylabel="DkNN accuracy %")
    axes[1].set(title="gray box: attacker's K", xlabel="DkNN's K", ylabel="DkNN accuracy %")
    for ax in axes:
        ax.legend(fontsize=7)
    df = pd.DataFrame({f"attacker K = {a}": {f"DkNN K = {k}": pct(attacker[str(a)][str(k)]["accuracy"])
                                             for k in exp["k_values"]} for a in exp["k_values"]})
    return ("## Figure 4: sensitivity of ASK-Atk to the temperature and to K\n\n" + save_figure(fig, "figure4")
            + "\n" + markdown(df))


def defense_tables(params) -> str:
    names = layer_names(params)
    runs = {m: read_json(METRICS / "defense" / f"{m}.json") for m in METHOD_NAMES}
    t3 = pd.DataFrame({METHOD_NAMES[m]: {n: pct(r["ask"][n]["accuracy"]) for n in names} for m, r in runs.items()})
    ref3 = pd.DataFrame({METHOD_NAMES[m]: {n: paper_cell(paper.TABLE3[m], n) for n in names}
                         for m in METHOD_NAMES})
    holds3 = sum(runs["askdef"]["ask"][n]["accuracy"] > runs["atsnn"]["ask"][n]["accuracy"]
                 > runs["at"]["ask"][n]["accuracy"] for n in names)
    eps_list = [str(e) for e in params["experiments"]["pgd_eps"]]
    t5 = pd.DataFrame({METHOD_NAMES[m]: {f"eps {e}": pct(r["pgd"][e]) for e in eps_list} for m, r in runs.items()}).T
    ref5 = pd.DataFrame({METHOD_NAMES[m]: dict(zip(("eps 0", "eps 4", "eps 6", "eps 8"), v))
                         for m, v in paper.TABLE5.items()}).T
    attacked = [e for e in eps_list if e != "0"]
    holds5 = sum(runs["askdef"]["pgd"][e] > runs["atsnn"]["pgd"][e] > runs["at"]["pgd"][e] for e in attacked)
    return (f"## Table 3: DkNN accuracy under ASK-Atk (eps {params['eps']}, cosine) of each training method\n\n"
            + markdown(t3) + "\nPaper (CIFAR-10):\n\n" + markdown(ref3)
            + verdict(holds3, len(names), "ASK-Def above AT+SNN above AT")
            + f"\n## Table 5: DNN accuracy under PGD ({params['experiments']['pgd_steps']} steps, "
            f"{params['experiments']['pgd_restarts']} restart(s))\n\n" + markdown(t5)
            + "\nPaper (CIFAR-10, eps 0/4/6/8):\n\n" + markdown(ref5)
            + verdict(holds5, len(attacked), "ASK-Def above AT+SNN above AT under attack"))


def defense_figures(params) -> str:
    exp = params["experiments"]
    runs = {m: read_json(METRICS / "defense" / f"{m}.json") for m in METHOD_NAMES}
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    eps = sorted(runs["at"]["eps_curve"], key=int)
    by_eps = pd.DataFrame({"eps": [int(e) for e in eps], **{METHOD_NAMES[m]: [100 * r["eps_curve"][e]["accuracy"]
                                                                            for e in eps] for m, r in runs.items()}})
    by_k = pd.DataFrame({"K": exp["k_values"], **{METHOD_NAMES[m]: [100 * r["k_curve"][str(k)]["accuracy"]
                                                                  for k in exp["k_values"]] for m, r in runs.items()}})
    for name in METHOD_NAMES.values():
        axes[0].plot(by_eps.eps, by_eps[name], marker="o", label=name)
        axes[1].plot(by_k.K, by_k[name], marker="o", label=name)
    save_points("figure1_right", by_eps)
    save_points("figure5", by_k)
    layers = layer_set_name(exp["sweep_layers"])
    axes[0].set(title=f"Figure 1 right: ASK-Atk on {layers}", xlabel="eps (/255)", ylabel="DkNN accuracy %")
    axes[1].set(title=f"Figure 5: ASK-Atk against K ({layers})", xlabel="K", ylabel="DkNN accuracy %")
    for ax in axes:
        ax.legend()
    return "## Figures 1 (right) and 5: robustness of the trained models\n\n" + save_figure(fig, "defense_curves")


SECTIONS = [setup, clean_accuracy, training, table1, advknn_block, eps_curves, table6, table7, table8, table9,
            figure4, defense_tables, defense_figures]


def build_report(params) -> str:
    return "# Results\n\nGenerated by `dvc repro` (stage `report`) from `metrics/`; do not edit by hand.\n\n" + \
        "\n".join(section(params) for section in SECTIONS)
