"""Stage tune@<method> <seed>: the open hyper-parameters of every attack that `method`'s evaluation runs
(ASK-Atk's tau and omega, DkNN-Atk's sigmoid steepness, AdvKnn's CE share, SW20's guides), chosen on
held-out training images at the evaluation budget, on the model trained with `seed` (the first
training seed), and then fixed for every seed's model. Writes metrics/tuning/<method>.json."""
from askknn.experiments import AttackSuite, tune_attack, tuning_targets
from askknn.io import write_json
from askknn.params import load_params
from askknn.registry import METHODS
from askknn.runtime import run_stage, stage_arguments, tuning_path


def main() -> None:
    method, seed = stage_arguments(__doc__, "method", "seed", choices={"method": list(METHODS)})
    params = load_params()
    suite = AttackSuite.from_project(".", method, params, seed)
    cells = [tune_attack(suite, attack, layers, metric, params["eps"])
             for attack, layers, metric in tuning_targets(params, method)]
    write_json(tuning_path(method), {"method": method, "seed": seed, "eps": params["eps"], "cells": cells})


if __name__ == "__main__":
    run_stage(main)
