"""Stage attack@<attack>-<metric>: DkNN accuracy under one attack at every DkNN layer set (Tables 1, 2)."""
import argparse

from askknn.experiments import AttackSuite, layer_sets, summary
from askknn.io import write_json
from askknn.params import load_params
from askknn.runtime import METRICS, layer_set_name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("attack")
    parser.add_argument("metric")
    args = parser.parse_args()
    params = load_params()
    suite = AttackSuite(params, "at")
    cells = {layer_set_name(ls): summary(suite.run(args.attack, ls, args.metric, params["eps"]), layer_set_name(ls))
             for ls in layer_sets(params)}
    write_json(METRICS / "attack" / f"{args.attack}_{args.metric}.json",
               {"attack": args.attack, "metric": args.metric, "eps": params["eps"], "layer_sets": cells})


if __name__ == "__main__":
    main()
