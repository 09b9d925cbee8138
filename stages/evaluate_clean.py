"""Stage evaluate_clean@<method>: DNN and DkNN clean accuracy on the evaluation images."""
from askknn.bank import FeatureBank, extract_features
from askknn.data import PreparedData
from askknn.defenses import METHODS
from askknn.dknn import DeepKNN, accuracy
from askknn.io import write_json
from askknn.params import load_params
from askknn.runtime import METRICS, PREPARED, bank_path, device, layer_set_name, load_trained, stage_arguments
from askknn.training import evaluate


def main() -> None:
    method, = stage_arguments(__doc__, "method", choices={"method": METHODS})
    params = load_params()
    dknn_params = params["dknn"]
    data = PreparedData(PREPARED)
    model = load_trained(method, params, data)
    bank, _ = FeatureBank.load(bank_path(method))
    x, y = data.split("eval")
    features = extract_features(model, x, dknn_params["layers"], dknn_params["batch_size"], device())
    result = {"dnn_accuracy": evaluate(model, x, y, device=device())["accuracy"], "dknn_accuracy": {}}
    for metric in dknn_params["metrics"]:
        result["dknn_accuracy"][metric] = {
            layer_set_name(layers): accuracy(DeepKNN(bank, layers, dknn_params["k"], metric).predict(features), y)
            for layers in dknn_params["layer_sets"]}
    write_json(METRICS / "clean" / f"{method}.json", result)


if __name__ == "__main__":
    main()
