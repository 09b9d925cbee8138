"""Stage attack@<attack>-<metric>: DkNN accuracy of the AT model under one attack at every DkNN
layer set (Tables 1, 2), on every evaluation image. ASK-Atk runs `attacks.random_starts`
independent random starts: the cell is the first start (the paper runs one), and the spread
over starts and the per-image worst case are reported beside it."""
from askknn.experiments import ATTACKS, AttackSuite, cell, layer_sets, outcome, worst_case
from askknn.params import METRICS as METRIC_NAMES, load_params
from askknn.runtime import layer_set_name, stage_arguments, write_evaluation
from askknn.stats import pack, proportion


def main() -> None:
    attack, metric = stage_arguments(__doc__, "attack", "metric", choices={"attack": ATTACKS, "metric": METRIC_NAMES})
    params = load_params()
    suite = AttackSuite(params, "at")
    suite.use_tuning()
    starts = params["attacks"]["random_starts"] if attack == "ask" else 1
    cells, outcomes = {}, {}
    for layers in layer_sets(params):
        name = layer_set_name(layers)
        runs = [suite.run(attack, layers, metric, params["eps"], start=s) for s in range(starts)]
        cells[name], outcomes[name] = cell(runs[0], name), {"start_0": outcome(runs[0], name)}
        if starts > 1:
            worst = worst_case(runs, name)
            cells[name]["starts"] = [cell(r, name)["accuracy"] for r in runs]
            cells[name]["worst_case"] = proportion(worst)
            outcomes[name]["worst_case"] = pack(worst)
    write_evaluation("attack", f"{attack}_{metric}", {"attack": attack, "metric": metric, "eps": params["eps"],
                                                      "layer_sets": cells}, outcomes)


if __name__ == "__main__":
    main()
