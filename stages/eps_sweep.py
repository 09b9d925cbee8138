"""Stage eps_sweep@<attack> <seed>: DkNN accuracy of the AT model (training seed `seed`) under
DkNN-Atk or AdvKnn against the budget (Figure 1, left; ASK-Atk's curve is evaluate_defense@at's), on
the first `experiments.subset_size` evaluation images. The step follows the budget (step rule)."""
from askknn.experiments import AttackSuite
from askknn.records import cell, outcome
from askknn.params import load_params
from askknn.registry import names
from askknn.runtime import layer_set_name, run_stage, stage_arguments, write_evaluation



def main() -> None:
    attack, seed = stage_arguments(__doc__, "attack", "seed", choices={"attack": names(lambda a: a.swept)})
    params = load_params()
    exp = params["experiments"]
    layers, name = exp["sweep_layers"], layer_set_name(exp["sweep_layers"])
    suite = AttackSuite.from_project(".", "at", params, seed)
    suite.use_tuning()
    runs = {str(eps): suite.run(attack, layers, "cosine", eps, n=exp["subset_size"]) for eps in exp["eps_sweep"]}
    write_evaluation("eps_sweep", attack, {"attack": attack, "layers": layers,
                                           "points": {e: cell(r, name) for e, r in runs.items()}},
                     {e: outcome(r, name) for e, r in runs.items()})


if __name__ == "__main__":
    run_stage(main)
