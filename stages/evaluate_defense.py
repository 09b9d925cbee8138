"""Stage evaluate_defense@<method>: robustness of one trained model, with its own tuning.

- DkNN accuracy under ASK-Atk (cosine) at every layer set on every evaluation image (Table 3;
  the AT model's cells are Table 1's, stage attack@ask-cosine, and are not computed twice);
- under ASK-APGD, and the worst case over every attack, on the first `attacks.worst_case_size`
  images (the AT model's: Table 1's): ASK-APGD on every image, then DkNN-Atk, SW20 and AdvKnn
  each on the images that every earlier attack failed on (AutoAttack's cascade);
- against the budget (Figure 1) and against K (Figure 5), on the first `experiments.subset_size`
  evaluation images;
- the DNN's accuracy under PGD on every evaluation image (Table 5), step = step_fraction x eps.
"""
import torch

from askknn.attacks.pgd import PGD
from askknn.evaluation import batches
from askknn.experiments import AttackSuite, cell, layer_sets, outcome, paired, run_seed
from askknn.params import load_params
from askknn.shared import METHODS
from askknn.runtime import device, layer_set_name, run_stage, stage_arguments, write_evaluation
from askknn.stats import proportion, unpack


def pgd_outcomes(suite: AttackSuite, eps: int) -> dict:
    """Per evaluation image, whether the DNN is correct on it clean and under PGD at eps (in 1/255),
    and whether it is correct clean."""
    exp, cfg = suite.params["experiments"], suite.cfg
    attack = PGD(eps / 255, exp["pgd_steps"], cfg["step_fraction"] * eps / 255, restarts=exp["pgd_restarts"],
                 seed=run_seed(cfg["seed"], suite.method, "pgd", eps))
    robust, clean = [], []
    for x, y in batches(*suite.evaluation_set(), cfg["batch_size"], device()):
        x_adv = attack(suite.model, x, y)
        with torch.no_grad():
            right = suite.model(x).argmax(1) == y
            clean.append(right.cpu())
            robust.append((right & (suite.model(x_adv).argmax(1) == y)).cpu())
    return {"robust": torch.cat(robust).numpy(), "clean": torch.cat(clean).numpy()}


def worst_cases(suite: AttackSuite, outcomes: dict, eps: int, n: int) -> tuple[dict, dict]:
    """Per layer set, the worst case over every attack on the first n images (see the docstring)."""
    summary, packed = {}, {}
    for ls in layer_sets(suite.params):
        name = layer_set_name(ls)
        robust = unpack(outcomes["ask"][name]["robust"])[:n] & unpack(outcomes["ask_apgd"][name]["robust"])
        result = suite.worst_case(ls, "cosine", eps, robust)
        summary[name] = {**proportion(result["robust"]), "cascade": result["attacks"]}
        packed[name] = paired(result["robust"], unpack(outcomes["ask"][name]["clean"])[:n])
    return summary, packed


def main() -> None:
    method, = stage_arguments(__doc__, "method", choices={"method": METHODS})
    params = load_params()
    exp, eps = params["experiments"], params["eps"]
    suite = AttackSuite.from_project(".", method, params)
    suite.use_tuning()
    layers, name = exp["sweep_layers"], layer_set_name(exp["sweep_layers"])
    n = params["attacks"]["worst_case_size"]
    runs = {"eps_curve": {str(e): suite.run("ask", layers, "cosine", e, n=exp["subset_size"])
                          for e in exp["eps_sweep"]},
            "k_curve": {str(k): suite.run("ask", layers, "cosine", eps, n=exp["subset_size"], k_pos=k, k_neg=k,
                                          judges={name: suite.dknn(layers, "cosine", k)})
                        for k in exp["k_values"]}}
    if method != "at":
        runs["ask"] = {layer_set_name(ls): suite.run("ask", ls, "cosine", eps) for ls in layer_sets(params)}
        runs["ask_apgd"] = {layer_set_name(ls): suite.run("ask_apgd", ls, "cosine", eps, n=n)
                            for ls in layer_sets(params)}
    summary = {part: {key: cell(r, key if part in ("ask", "ask_apgd") else name) for key, r in group.items()}
               for part, group in runs.items()}
    outcomes = {part: {key: outcome(r, key if part in ("ask", "ask_apgd") else name) for key, r in group.items()}
                for part, group in runs.items()}
    if method != "at":
        summary["worst_case"], outcomes["worst_case"] = worst_cases(suite, outcomes, eps, n)
    pgd = {str(e): pgd_outcomes(suite, e) for e in exp["pgd_eps"]}
    summary["pgd"] = {e: proportion(ok["robust"]) for e, ok in pgd.items()}
    outcomes["pgd"] = {e: paired(ok["robust"], ok["clean"]) for e, ok in pgd.items()}
    write_evaluation("defense", method, {"method": method, "eps": eps, **summary}, outcomes)


if __name__ == "__main__":
    run_stage(main)
