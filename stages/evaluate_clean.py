"""Stage evaluate_clean@<method>-<seed>: DNN and DkNN clean accuracy (with n and 95% interval) on the
evaluation images, and per DkNN how often its vote was tied (`tie_rate`: the tie rule then decides)."""
import torch

from askknn.bank import FeatureBank, extract_features
from askknn.data import PreparedData, to_float
from askknn.dknn import DeepKNN, tie_rate
from askknn.io import write_json
from askknn.params import load_params
from askknn.shared import METHODS
from askknn.runtime import (METRICS, PREPARED, bank_path, device, layer_set_name, load_trained, model_name,
                            run_stage,
                            stage_arguments)
from askknn.stats import proportion


@torch.no_grad()
def dnn_correct(model, images, labels, batch_size: int) -> torch.Tensor:
    preds = [model(to_float(images[i:i + batch_size].to(device()))).argmax(1).cpu()
             for i in range(0, len(labels), batch_size)]
    return torch.cat(preds) == labels


def main() -> None:
    method, seed = stage_arguments(__doc__, "method", "seed", choices={"method": METHODS})
    params = load_params()
    dknn_params = params["dknn"]
    data = PreparedData(PREPARED)
    model = load_trained(method, seed, params, data)
    bank, _ = FeatureBank.load(bank_path(method, seed))
    x, y = data.split("eval")
    features = extract_features(model, x, dknn_params["layers"], dknn_params["batch_size"], device())
    dnn = proportion(dnn_correct(model, x, y, dknn_params["batch_size"]).numpy())
    result = {"method": method, "seed": seed, "dnn": dnn, "dknn": {}}
    for metric in dknn_params["metrics"]:
        result["dknn"][metric] = {}
        for layers in dknn_params["layer_sets"]:
            counts, predictions = DeepKNN(bank, layers, dknn_params["k"], metric).votes(features)
            result["dknn"][metric][layer_set_name(layers)] = {**proportion(predictions == y.numpy()),
                                                              "tie_rate": tie_rate(counts)}
    write_json(METRICS / "clean" / f"{model_name(method, seed)}.json", result)


if __name__ == "__main__":
    run_stage(main)
