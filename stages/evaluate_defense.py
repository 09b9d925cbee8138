"""Stage evaluate_defense@<method> <seed>: the stronger attacks and the curves of one method's model
under its first training seed (the tuned one): ASK-APGD and the worst case over every attack on
the first `attacks.worst_case_size` images (the AT model's are Table 1's), and the DkNN under
ASK-Atk against the budget (Figure 1) and against K (Figure 5) on the first
`experiments.subset_size` (askknn.studies.defense_cells). Tables 3 and 5 for every seed are
evaluate_trained's; its ASK-Atk outcomes are the worst case's first attack."""
from askknn.experiments import AttackSuite
from askknn.params import load_params
from askknn.registry import METHODS
from askknn.runtime import run_stage, stage_arguments, write_evaluation
from askknn.studies import defense_cells, table3_ask_outcomes


def main() -> None:
    method, seed = stage_arguments(__doc__, "method", "seed", choices={"method": list(METHODS)})
    params = load_params()
    suite = AttackSuite.from_project(".", method, params, seed)
    suite.use_tuning()
    summary, outcomes = defense_cells(suite, table3_ask_outcomes(".", method, seed))
    write_evaluation("defense", method, {"method": method, "seed": seed, "eps": params["eps"], **summary}, outcomes)


if __name__ == "__main__":
    run_stage(main)
