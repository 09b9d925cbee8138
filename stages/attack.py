"""Stage attack@<attack>-<metric> <seed>: DkNN accuracy of the AT model (training seed `seed`) under
one attack at every DkNN layer set (Tables 1, 2; what runs: askknn.studies.attack_cells)."""
from askknn.experiments import AttackSuite
from askknn.params import load_params
from askknn.registry import ATTACKS
from askknn.runtime import run_stage, stage_arguments, write_evaluation
from askknn.shared import METRICS as METRIC_NAMES
from askknn.studies import attack_cells


def main() -> None:
    attack, metric, seed = stage_arguments(__doc__, "attack", "metric", "seed",
                                          choices={"attack": list(ATTACKS), "metric": METRIC_NAMES})
    params = load_params()
    suite = AttackSuite.from_project(".", "at", params, seed)
    suite.use_tuning()
    cells, outcomes = attack_cells(suite, attack, metric)
    write_evaluation("attack", f"{attack}_{metric}", {"attack": attack, "metric": metric, "eps": params["eps"],
                                                      "layer_sets": cells}, outcomes)


if __name__ == "__main__":
    run_stage(main)
