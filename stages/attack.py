"""Stage attack@<attack>-<metric>: DkNN accuracy under one attack at every DkNN layer set (Tables 1, 2)."""
from askknn.experiments import ATTACKS, AttackSuite, layer_sets, summary
from askknn.io import write_json
from askknn.params import METRICS as METRIC_NAMES, load_params
from askknn.runtime import METRICS, layer_set_name, stage_arguments


def main() -> None:
    attack, metric = stage_arguments(__doc__, "attack", "metric", choices={"attack": ATTACKS, "metric": METRIC_NAMES})
    params = load_params()
    suite = AttackSuite(params, "at")
    cells = {layer_set_name(ls): summary(suite.run(attack, ls, metric, params["eps"]), layer_set_name(ls))
             for ls in layer_sets(params)}
    write_json(METRICS / "attack" / f"{attack}_{metric}.json",
               {"attack": attack, "metric": metric, "eps": params["eps"], "layer_sets": cells})


if __name__ == "__main__":
    main()
