"""Stage evaluate_clean@<method>-<seed>: DNN and DkNN clean accuracy (with n and 95% interval) on the
evaluation images, and per DkNN how often its vote was tied (`tie_rate`: the tie rule then decides)."""
from askknn.bank import FeatureBank
from askknn.data import PreparedData
from askknn.evaluation import clean_accuracies
from askknn.io import write_json
from askknn.params import load_params
from askknn.registry import METHODS
from askknn.runtime import (METRICS_DIR, PREPARED, bank_path, device, load_trained, model_name, run_stage,
                            stage_arguments)


def main() -> None:
    method, seed = stage_arguments(__doc__, "method", "seed", choices={"method": list(METHODS)})
    params = load_params()
    data = PreparedData(PREPARED)
    model = load_trained(method, seed, params, data)
    bank, _ = FeatureBank.load(bank_path(method, seed))
    result = clean_accuracies(model, bank, *data.split("eval"), params["dknn"], device())
    write_json(METRICS_DIR / "clean" / f"{model_name(method, seed)}.json", {"method": method, "seed": seed, **result})


if __name__ == "__main__":
    run_stage(main)
