"""Stage eps_sweep@<attack>: DkNN accuracy of the AT model against the budget (Figure 1, left)."""
import argparse

from askknn.experiments import AttackSuite, summary
from askknn.io import write_json
from askknn.params import load_params
from askknn.runtime import METRICS, layer_set_name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("attack")
    attack = parser.parse_args().attack
    params = load_params()
    exp = params["experiments"]
    layers = exp["sweep_layers"]
    suite = AttackSuite(params, "at")
    points = {str(eps): summary(suite.run(attack, layers, "cosine", eps), layer_set_name(layers))
              for eps in sorted(exp["eps_sweep"], key=lambda e: e == 0)}
    write_json(METRICS / "eps_sweep" / f"{attack}.json", {"attack": attack, "layers": layers, "points": points})


if __name__ == "__main__":
    main()
