"""Stage evaluate_defense@<method>: robustness of one trained model.

DkNN accuracy under ASK-Atk at every layer set (Tables 3, 4), against the budget (Figure 1 right)
and against K (Figure 5), and the DNN's accuracy under PGD (Table 5)."""
from askknn.attacks.pgd import PGD
from askknn.defenses import METHODS
from askknn.experiments import AttackSuite, layer_sets, summary
from askknn.io import read_json, write_json
from askknn.params import load_params
from askknn.runtime import METRICS, device, layer_set_name, stage_arguments
from askknn.training import evaluate


def main() -> None:
    method, = stage_arguments(__doc__, "method", choices={"method": METHODS})
    params = load_params()
    exp, eps = params["experiments"], params["eps"]
    suite = AttackSuite(params, method)
    layers = exp["sweep_layers"]
    result = {
        "ask": {layer_set_name(ls): summary(suite.run("ask", ls, "cosine", eps), layer_set_name(ls))
                for ls in layer_sets(params)},
        "eps_curve": {str(e): summary(suite.run("ask", layers, "cosine", e), layer_set_name(layers))
                      for e in sorted(exp["eps_sweep"], key=lambda e: e == 0)},
        "k_curve": {str(k): summary(suite.run("ask", layers, "cosine", eps, k_pos=k, k_neg=k,
                                              judges={"dknn": suite.dknn(layers, "cosine", k)}), "dknn")
                    for k in exp["k_values"]},
        "pgd": {str(e): evaluate(suite.model, suite.images, suite.labels,
                                 PGD(e / 255, exp["pgd_steps"], 2.5 * e / exp["pgd_steps"] / 255,
                                     restarts=exp["pgd_restarts"]), device=device())["accuracy"]
                for e in exp["pgd_eps"]},
    }
    epoch_seconds = {m: read_json(METRICS / "train" / f"{m}.json")["epoch_seconds"] for m in (method, "at")}
    result["epoch_time_ratio_to_at"] = epoch_seconds[method] / epoch_seconds["at"]
    write_json(METRICS / "defense" / f"{method}.json", {"method": method, "eps": eps, **result})


if __name__ == "__main__":
    main()
