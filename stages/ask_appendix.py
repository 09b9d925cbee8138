"""Stage ask_appendix@<experiment> <seed>: one of the paper's appendix studies of ASK-Atk on the AT
model (training seed `seed`; the studies: askknn/appendix.py)."""
from askknn.appendix import EXPERIMENTS, leaves
from askknn.experiments import AttackSuite
from askknn.params import load_params
from askknn.records import cell, outcome
from askknn.runtime import run_stage, stage_arguments, write_evaluation


def main() -> None:
    name, seed = stage_arguments(__doc__, "experiment", "seed", choices={"experiment": sorted(EXPERIMENTS)})
    params = load_params()
    suite = AttackSuite.from_project(".", "at", params, seed)
    suite.use_tuning()
    runs = EXPERIMENTS[name](suite, params)
    write_evaluation("ask_appendix", name, {"experiment": name, "eps": params["eps"], "cells": leaves(runs, cell)},
                     leaves(runs, outcome))


if __name__ == "__main__":
    run_stage(main)
