"""Stage evaluate_defense@<method> <seed>: the stronger attacks and the curves of one method's model
under its first training seed (the tuned one); Tables 3 and 5 for every seed are evaluate_trained's.

- under ASK-APGD, and the worst case over every attack, on the first `attacks.worst_case_size`
  images (the AT model's: Table 1's): ASK-Atk (from evaluate_trained) and ASK-APGD on every image,
  then DkNN-Atk, SW20 and AdvKnn each on the images that every earlier attack failed on
  (AutoAttack's cascade);
- against the budget (Figure 1) and against K (Figure 5), on the first `experiments.subset_size`
  evaluation images.
"""
from askknn.experiments import AttackSuite, cell, layer_sets, outcome, paired
from askknn.io import read_json
from askknn.params import load_params
from askknn.shared import METHODS
from askknn.runtime import OUTCOMES, layer_set_name, model_name, run_stage, stage_arguments, write_evaluation
from askknn.stats import proportion, unpack


def worst_cases(suite: AttackSuite, ask: dict, apgd: dict, eps: int, n: int) -> tuple[dict, dict]:
    """Per layer set, the worst case over every attack on the first n images (see the docstring);
    `ask`, `apgd`: per layer set, the packed {robust, clean} outcomes of ASK-Atk and ASK-APGD."""
    summary, packed = {}, {}
    for ls in layer_sets(suite.params):
        name = layer_set_name(ls)
        robust = unpack(ask[name]["robust"])[:n] & unpack(apgd[name]["robust"])
        result = suite.worst_case(ls, "cosine", eps, robust)
        summary[name] = {**proportion(result["robust"]), "cascade": result["attacks"]}
        packed[name] = paired(result["robust"], unpack(ask[name]["clean"])[:n])
    return summary, packed


def main() -> None:
    method, seed = stage_arguments(__doc__, "method", "seed", choices={"method": METHODS})
    params = load_params()
    exp, eps = params["experiments"], params["eps"]
    suite = AttackSuite.from_project(".", method, params, seed)
    suite.use_tuning()
    layers, name = exp["sweep_layers"], layer_set_name(exp["sweep_layers"])
    n = params["attacks"]["worst_case_size"]
    runs = {"eps_curve": {str(e): (suite.run("ask", layers, "cosine", e, n=exp["subset_size"]), name)
                          for e in exp["eps_sweep"]},
            "k_curve": {str(k): (suite.run("ask", layers, "cosine", eps, n=exp["subset_size"], k_pos=k, k_neg=k,
                                           judges={name: suite.dknn(layers, "cosine", k)}), name)
                        for k in exp["k_values"]}}
    if method != "at":   # the AT model's stronger attacks are Table 1's
        runs["ask_apgd"] = {layer_set_name(ls): (suite.run("ask_apgd", ls, "cosine", eps, n=n), layer_set_name(ls))
                            for ls in layer_sets(params)}
    summary = {part: {key: cell(*run) for key, run in group.items()} for part, group in runs.items()}
    outcomes = {part: {key: outcome(*run) for key, run in group.items()} for part, group in runs.items()}
    if method != "at":
        trained = read_json(OUTCOMES / "trained" / f"{model_name(method, seed)}.json")
        ask = {key: {part: trained[part]["ask"][key] for part in ("robust", "clean")}
               for key in trained["robust"]["ask"]}
        summary["worst_case"], outcomes["worst_case"] = worst_cases(suite, ask, outcomes["ask_apgd"], eps, n)
    write_evaluation("defense", method, {"method": method, "seed": seed, "eps": eps, **summary}, outcomes)


if __name__ == "__main__":
    run_stage(main)
