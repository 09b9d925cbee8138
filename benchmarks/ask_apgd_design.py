"""How ASK-APGD's restarts were chosen: DkNN accuracy of the AT model under ASK-Atk and under
ASK-APGD variants on held-out training images (the held-out split after the tuning images; never
evaluation images). Writes reports/ask_apgd_design.md. Run after `dvc repro` (it needs the AT
model, its bank and tune@at):  python benchmarks/ask_apgd_design.py
"""
from __future__ import annotations

import argparse

from askknn.attacks.ask import ASKAttack
from askknn.attacks.ask_apgd import ASKAPGDAttack
from askknn.evaluation import run_attack
from askknn.attacks.ask import tuned
from askknn.experiments import AttackSuite
from askknn.io import write_text
from askknn.params import load_params
from askknn.runtime import REPORTS, device, layer_set_name
from askknn.stats import proportion

VARIANTS = [("random", 2, 20), ("random", 4, 10), ("best", 2, 20), ("best", 4, 10)]   # restart, runs, steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=500)
    args = parser.parse_args()
    params = load_params()
    suite = AttackSuite.from_project(".", "at", params)
    suite.use_tuning()
    first = params["attacks"]["tuning_size"]
    images, labels = suite.data.split("val")
    images, labels = images[first:first + args.images], labels[first:first + args.images]
    eps, cfg = params["eps"], params["attacks"]
    rows = ["| layers | attack | restart | runs x steps | DkNN accuracy [95% CI] |", "|---|---|---|---|---|"]
    for layers in (["conv4"], ["conv3", "conv4"]):
        name, ask = layer_set_name(layers), tuned(suite, layers, "cosine")
        judge = {name: suite.dknn(layers, "cosine")}
        attacks = [("ASK-Atk", "-", f"1 x {cfg['steps']}",
                    ASKAttack(suite.bank, layers, metric="cosine", **suite.budget(eps), **ask, seed=1))]
        attacks += [("ASK-APGD", restart, f"{runs} x {steps}",
                     ASKAPGDAttack(suite.bank, layers, eps / 255, suite.k, "cosine", steps=steps, restarts=runs,
                                   restart=restart, seed=1, **ask)) for restart, runs, steps in VARIANTS]
        for label, restart, budget, attack in attacks:
            ok = run_attack(attack, suite.model, images, labels, judge, cfg["batch_size"], device())
            p = proportion(ok["outcomes"][name]["adversarial"])
            rows.append(f"| {name} | {label} | {restart} | {budget} | {100 * p['accuracy']:.1f} "
                        f"[{100 * p['ci95'][0]:.1f}, {100 * p['ci95'][1]:.1f}] |")
            print(rows[-1])
    write_text(REPORTS / "ask_apgd_design.md", "\n".join([
        "# ASK-APGD's restarts: the design choice, on held-out training images\n",
        f"Preset `{params['preset']}`, AT model, cosine, eps {eps}/255, n = {len(labels)} images of the held-out "
        f"split of the training data (after the {first} tuning images; no evaluation image). ASK-Atk and ASK-APGD use "
        f"the tuned tau and omega. restart `random`: a fresh random start with the clean input's references "
        f"(Croce & Hein); `best`: from the best point so far, with X+ and X- found again there. Written by "
        f"`python benchmarks/ask_apgd_design.py`.\n", *rows]) + "\n")


if __name__ == "__main__":
    main()
