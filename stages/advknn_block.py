"""Stage advknn_block@<metric>: AdvKnn's deep kNN block for the AT model, trained on the cached bank
features (backbone frozen), and its agreement with the real kNN on held-out images."""
from askknn.attacks.advknn import knn_agreement, train_knn_block
from askknn.bank import FeatureBank
from askknn.experiments import advknn_block_path
from askknn.io import save_torch, write_json
from askknn.params import METRICS as METRIC_NAMES, load_params
from askknn.runtime import METRICS, bank_path, stage_arguments


def main() -> None:
    metric, = stage_arguments(__doc__, "metric", choices={"metric": METRIC_NAMES})
    params = load_params()
    cfg, k, layers = params["attacks"]["advknn"], params["dknn"]["k"], params["dknn"]["layers"]
    bank, extra = FeatureBank.load(bank_path("at"))
    lam = cfg["lam_single"] if len(layers) == 1 else cfg["lam_multi"]
    block, history = train_knn_block(bank, layers, k, metric, epochs=cfg["epochs"], lr=cfg["lr"], lam=lam,
                                     seed=params["data"]["seed"])
    held_out = {layer: extra[f"val_{layer}"] for layer in layers}
    save_torch(advknn_block_path("at", metric), block.state())
    write_json(METRICS / "advknn" / f"{metric}.json", {
        "metric": metric, "epochs": cfg["epochs"], "final_loss": history[-1],
        "agreement_with_knn": knn_agreement(block, bank, held_out, layers, k, metric)})


if __name__ == "__main__":
    main()
