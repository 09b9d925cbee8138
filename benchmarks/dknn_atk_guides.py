"""Study: how many guides DkNN-Atk should pull towards (its m, `attacks.dknn_atk.guides`).

Sitawarin & Wagner's code sets m apart from the DkNN's K (its l_inf runs: m = 75). This runs the
tuner's protocol for each m: on the tuning images (held out of training, never evaluated), every
steepness of the preset's grid, the one leaving the DkNN least accurate chosen per m; then each m
against m = K on the same images (exact McNemar, Holm over every comparison of the run). Tuning
picks the best of the grid on these same images, for every m alike, so the levels are optimistic
and the comparison is what the choice of m rests on, not an evaluation. Writes
reports/dknn_atk_guides.md and .json.

    python benchmarks/dknn_atk_guides.py              # the AT model of the project here, every DkNN-Atk cell
    python benchmarks/dknn_atk_guides.py --guides k 75
"""
from __future__ import annotations

import argparse
from datetime import datetime, timezone
from pathlib import Path

from askknn.evaluation import run_attack
from askknn.experiments import AttackSuite, run_seed, tune_attack, tuning_targets
from askknn.io import write_json, write_text
from askknn.runtime import REPORTS, device, layer_set_name
from askknn.stats import claim_verdict, holm, proportion

ROOT = Path(__file__).resolve().parents[1]


def tuned_outcomes(suite: AttackSuite, layers, metric: str, eps: int) -> tuple[dict, list]:
    """(the steepness the tuning stage chooses at the suite's guides, its per-image robust outcomes
    on the tuning images): `tune_attack` itself, then its choice run once more with the same seed."""
    chosen = tune_attack(suite, "dknn_atk", layers, metric, eps)["chosen"]
    make, _ = suite.factory("dknn_atk", layers, metric, eps, {})
    seed = run_seed(suite.cfg["seed"], suite.method, "dknn_atk", list(layers), metric, eps, "tuning")
    images, labels = suite.tuning_set()
    run = run_attack(make(seed, **chosen), suite.model, images, labels, {"judge": suite.dknn(layers, metric)},
                     suite.cfg["batch_size"], device())
    return chosen, run["outcomes"]["judge"]["adversarial"]


def compare_guides(suite: AttackSuite, cells: list[tuple], guides: list, eps: int) -> list[dict]:
    """Per cell (layers, metric) and m: the chosen steepness and robust accuracy, and the test of that
    m against m = `guides[0]` (the claim: lower)."""
    rows, configured = [], suite.cfg["dknn_atk"]["guides"]
    try:
        for layers, metric in cells:
            outcomes = {}
            for m in guides:
                suite.cfg["dknn_atk"]["guides"] = m
                chosen, outcomes[m] = tuned_outcomes(suite, layers, metric, eps)
                test = None if m == guides[0] else claim_verdict(outcomes[m], outcomes[guides[0]], "lower")
                rows.append({"layers": layer_set_name(layers), "metric": metric, "guides": m, "chosen": chosen,
                             **proportion(outcomes[m]), "test": test})
                print(rows[-1]["layers"], metric, m, chosen, round(rows[-1]["accuracy"], 3), flush=True)
    finally:
        suite.cfg["dknn_atk"]["guides"] = configured
    tested = [r for r in rows if r["test"]]
    for row, test in zip(tested, holm([r["test"] for r in tested])):
        row["test"] = test
    return rows


def render(info: dict) -> str:
    base = info["guides"][0]
    lines = ["# DkNN-Atk: how many guides (m)\n",
             f"{info['date']}; preset `{info['preset']}`, the `{info['method']}` model (training seed "
             f"{info['seed']}), eps = {info['eps']}/255, DkNN K = {info['k']}; n = {info['n']} tuning images "
             f"(held out of training); per m the steepness of `attacks.dknn_atk.steepness_grid` that leaves the "
             f"DkNN least accurate. Each m against m = {base}: exact McNemar on the same images, Holm over the "
             f"{info['tests']} comparisons. The best of the grid is chosen on these images for every m alike, so "
             f"the levels are optimistic; the comparison is what the choice of m rests on, not an evaluation. "
             f"Written by `python benchmarks/dknn_atk_guides.py`.\n",
             f"| layers | metric | m | chosen steepness | robust accuracy [95% CI] | vs m = {base} | p (Holm) "
             "| verdict |",
             "|---|---|---|---|---|---|---|---|"]
    for r in info["rows"]:
        t = r["test"]
        versus = ("", "", "") if t is None else (f"{100 * t['difference']:+.1f} points", f"{t['p_holm']:.2g}",
                                                 t["verdict"])
        lines.append(f"| {r['layers']} | {r['metric']} | {r['guides']} | {r['chosen']['steepness']:g} | "
                     f"{100 * r['accuracy']:.1f}% [{100 * r['ci95'][0]:.1f}, {100 * r['ci95'][1]:.1f}] | "
                     + " | ".join(versus) + " |")
    return "\n".join(lines) + "\n"


def guides_value(text: str):
    return text if text == "k" else int(text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=ROOT, help="the project whose trained model is studied")
    parser.add_argument("--method", default="at")
    parser.add_argument("--guides", type=guides_value, nargs="+", default=["k", 10, 20, 40, 75, 150],
                        help="the values of m; each is compared with the first")
    parser.add_argument("--out", type=Path, default=REPORTS)
    args = parser.parse_args(argv)
    started = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    suite = AttackSuite.from_project(args.root, args.method)
    params = suite.params
    cells = [(list(ls), metric) for attack, ls, metric in tuning_targets(params, args.method) if attack == "dknn_atk"]
    rows = compare_guides(suite, cells, args.guides, params["eps"])
    info = {"date": started, "preset": params["preset"], "method": args.method, "seed": params["seeds"][0],
            "eps": params["eps"], "k": params["dknn"]["k"], "n": rows[0]["n"], "guides": args.guides,
            "tests": sum(r["test"] is not None for r in rows), "rows": rows}
    write_json(args.out / "dknn_atk_guides.json", info)
    write_text(args.out / "dknn_atk_guides.md", render(info))


if __name__ == "__main__":
    main()
