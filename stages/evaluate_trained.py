"""Stage evaluate_trained@<method>-<seed>: Tables 3 and 5 for one trained model (every method under
every training seed), with the hyper-parameters tuned on the method's first-seed model.

- DkNN accuracy under ASK-Atk (cosine, eps) at every layer set on every evaluation image (Table 3);
- the DNN's accuracy under PGD at every experiments.pgd_eps on every evaluation image (Table 5),
  step = step_fraction x eps.
"""
from askknn.experiments import AttackSuite, cell, layer_sets, outcome, paired, pgd_outcomes
from askknn.params import load_params
from askknn.shared import METHODS
from askknn.runtime import layer_set_name, model_name, run_stage, stage_arguments, write_evaluation
from askknn.stats import proportion


def main() -> None:
    method, seed = stage_arguments(__doc__, "method", "seed", choices={"method": METHODS})
    params = load_params()
    suite = AttackSuite.from_project(".", method, params, seed)
    suite.use_tuning()
    runs = {layer_set_name(ls): suite.run("ask", ls, "cosine", params["eps"]) for ls in layer_sets(params)}
    pgd = {str(e): pgd_outcomes(suite, e) for e in params["experiments"]["pgd_eps"]}
    summary = {"method": method, "seed": seed, "eps": params["eps"],
               "ask": {name: cell(r, name) for name, r in runs.items()},
               "pgd": {e: proportion(ok["robust"]) for e, ok in pgd.items()}}
    outcomes = {"ask": {name: outcome(r, name) for name, r in runs.items()},
                "pgd": {e: paired(ok["robust"], ok["clean"]) for e, ok in pgd.items()}}
    write_evaluation("trained", model_name(method, seed), summary, outcomes)


if __name__ == "__main__":
    run_stage(main)
