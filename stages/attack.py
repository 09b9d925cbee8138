"""Stage attack@<attack>-<metric> <seed>: DkNN accuracy of the AT model (training seed `seed`) under
one attack at every DkNN layer set (Tables 1, 2): the paper's attacks on every evaluation image,
ASK-APGD and SW20 on the first `attacks.worst_case_size` (the images of the worst case over all
attacks). ASK-Atk also runs `attacks.random_starts` - 1 further independent random starts on the
first `experiments.subset_size` images: the cell is the first start (the paper runs one); the spread over
starts and the per-image worst case, on those first images, are reported beside it. ASK-APGD also
runs with as many gradient passes as ASK-Atk (`equal_passes`: attacks.steps // ask_apgd.steps runs),
so that "stronger" is not only more compute."""
from askknn.experiments import ATTACKS, AttackSuite, cell, layer_sets, outcome, paired
from askknn.params import load_params
from askknn.shared import METRICS as METRIC_NAMES
from askknn.runtime import layer_set_name, run_stage, stage_arguments, write_evaluation
from askknn.stats import proportion


def equal_passes(suite: AttackSuite, params: dict, metric: str, cells: dict, outcomes: dict) -> None:
    """ASK-APGD limited to ASK-Atk's gradient passes, on the same images, beside the full run."""
    cfg = params["attacks"]
    runs = max(1, cfg["steps"] // cfg["ask_apgd"]["steps"])
    suite.cfg = {**cfg, "ask_apgd": {**cfg["ask_apgd"], "restarts": runs}}
    for layers in layer_sets(params):
        name = layer_set_name(layers)
        run = suite.run("ask_apgd", layers, metric, params["eps"], n=cfg["worst_case_size"])
        cells[name]["equal_passes"] = {**cell(run, name), "passes": runs * cfg["ask_apgd"]["steps"]}
        outcomes[name]["equal_passes"] = outcome(run, name)


def main() -> None:
    attack, metric, seed = stage_arguments(__doc__, "attack", "metric", "seed",
                                          choices={"attack": ATTACKS, "metric": METRIC_NAMES})
    params = load_params()
    suite = AttackSuite.from_project(".", "at", params, seed)
    suite.use_tuning()
    starts, n = (params["attacks"]["random_starts"] if attack == "ask" else 1), params["experiments"]["subset_size"]
    cells, outcomes = {}, {}
    subset = {a: params["attacks"]["worst_case_size"] for a in ("ask_apgd", "sw20")}
    for layers in layer_sets(params):
        name = layer_set_name(layers)
        first = suite.run(attack, layers, metric, params["eps"], n=subset.get(attack))
        cells[name], outcomes[name] = cell(first, name), {"start_0": outcome(first, name)}
        if starts > 1:
            runs = [first["outcomes"][name]["adversarial"][:n]]
            runs += [suite.run(attack, layers, metric, params["eps"], n=n, start=s)["outcomes"][name]["adversarial"]
                     for s in range(1, starts)]
            worst = sum(runs) == len(runs)   # correct under every start
            cells[name]["starts"] = [proportion(r) for r in runs]
            cells[name]["worst_case"] = proportion(worst)
            outcomes[name]["worst_case"] = paired(worst, first["outcomes"][name]["clean"][:n])
    if attack == "ask_apgd":
        equal_passes(suite, params, metric, cells, outcomes)
    write_evaluation("attack", f"{attack}_{metric}", {"attack": attack, "metric": metric, "eps": params["eps"],
                                                      "layer_sets": cells}, outcomes)


if __name__ == "__main__":
    run_stage(main)
