"""Stage eps_sweep@<attack>: DkNN accuracy of the AT model against the budget (Figure 1, left)."""
from askknn.experiments import ATTACKS, AttackSuite, summary
from askknn.io import write_json
from askknn.params import load_params
from askknn.runtime import METRICS, layer_set_name, stage_arguments


def main() -> None:
    attack, = stage_arguments(__doc__, "attack", choices={"attack": ATTACKS})
    params = load_params()
    exp = params["experiments"]
    layers = exp["sweep_layers"]
    suite = AttackSuite(params, "at")
    points = {str(eps): summary(suite.run(attack, layers, "cosine", eps), layer_set_name(layers))
              for eps in sorted(exp["eps_sweep"], key=lambda e: e == 0)}
    write_json(METRICS / "eps_sweep" / f"{attack}.json", {"attack": attack, "layers": layers, "points": points})


if __name__ == "__main__":
    main()
