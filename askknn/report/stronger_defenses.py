"""Section: Table 3 under stronger attacks: ASK-APGD and the worst case over every attack."""
from __future__ import annotations

import pandas as pd

from askknn import registry
from askknn.report import claims
from askknn.report.common import (
    ATTACK_NAMES,
    METHOD_NAMES,
    first_images,
    layer_names,
    listing,
    markdown,
    metrics,
    outcomes,
    suite,
    table1_worst_case,
    with_ci,
)
from askknn.runtime import model_name
from askknn.stats import pack, proportion, unpack


def stronger_cells(params, method: str, n: int) -> dict:
    """Per layer set: packed outcomes of ASK-Atk (first n), ASK-APGD and the worst case of a model's
    first-seed model (cosine), and the cost of the worst case's cascade (None for the AT model:
    Table 1's runs)."""
    if method == "at":
        outs = {a: outcomes("attack", f"{a}_cosine") for a in suite()}
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
    claim = claims.STRONGER_ON_DEFENSES
    lines = "".join(verdicts.claim(claim.what(model=METHOD_NAMES[m], layers=name), claim.source, c[name][claim.a],
                                   c[name][claim.b], claim.direction)
                    for m, c in cells.items() if m != "at" for name in names)   # AT's: Table 1's, same runs
    worst = {m: {name: unpack(c[name]["worst_case"]).mean() for name in names} for m, c in cells.items()}
    pairs = [(c.a, c.b) for c in claims.TRAINING_METHODS]
    gaps = pd.DataFrame({f"{METHOD_NAMES[a]} - {METHOD_NAMES[b]}": {
        name: f"{100 * (worst[a][name] - worst[b][name]):+.1f}" for name in names} for a, b in pairs}).T
    cost = {}
    for m, c in cells.items():
        for name in names:
            runs = c[name]["cascade"] or {}
            for attack in (a for a in registry.cascade() if a in runs):   # in the order they ran
                run = runs[attack]
                cost[f"{METHOD_NAMES[m]}, {name}, {ATTACK_NAMES[attack]}"] = {
                    "images attacked": run["images"], "of which fooled": run["fooled"],
                    "ms per image": f"{1000 * run['seconds_per_image']:.2f}"}
    return (f"## Table 3 under stronger attacks: ASK-APGD and the worst case over all {len(suite())} attacks (cosine, "
            f"{first_images(n, params['data']['eval_size'])}, seed-{params['seeds'][0]} models)\n\n"
            f"The AT model's worst case is Table 1's, "
            f"and so are its verdicts (the same runs). For the "
            f"other models ASK-Atk and ASK-APGD run on every image; "
            f"{listing(registry.cascade())} (each with the model's "
            f"own tuning and kNN block) then run in turn on the images that every earlier attack failed on "
            f"(AutoAttack's cascade), so an image counts as robust only if all {len(suite())} fail.\n\n"
            + markdown(df) + "\n"
            + lines + verdicts.tally(first)
            + f"\nThe training methods under the worst case, as differences in points (one training run each, seed "
              f"{params['seeds'][0]}: numbers, not verdicts; the verdicts on training methods are Table 3's, over "
              f"every seed):\n\n" + markdown(gaps)
            + "\nCost of the cascade (after ASK-Atk and ASK-APGD):\n\n"
            + (markdown(pd.DataFrame(cost).T) if cost else "none\n"))
