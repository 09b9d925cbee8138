"""Stage evaluate_trained@<method>-<seed>: Tables 3 and 5 for one trained model (every method under
every training seed), with the hyper-parameters tuned on the method's first-seed model: the DkNN
under ASK-Atk (cosine) at every layer set and the DNN under PGD (askknn.studies.trained_cells)."""
from askknn.experiments import AttackSuite
from askknn.params import load_params
from askknn.registry import METHODS
from askknn.runtime import model_name, run_stage, stage_arguments, write_evaluation
from askknn.studies import trained_cells


def main() -> None:
    method, seed = stage_arguments(__doc__, "method", "seed", choices={"method": list(METHODS)})
    params = load_params()
    suite = AttackSuite.from_project(".", method, params, seed)
    suite.use_tuning()
    summary, outcomes = trained_cells(suite)
    write_evaluation("trained", model_name(method, seed), {"method": method, "seed": seed, "eps": params["eps"],
                                                          **summary}, outcomes)


if __name__ == "__main__":
    run_stage(main)
