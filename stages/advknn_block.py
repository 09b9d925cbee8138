"""Stage advknn_block@<method>-<metric> <seed>: AdvKnn's deep kNN blocks for one trained model
(training seed `seed`; every model's, in both metrics: the tuning of AdvKnn's CE share, Table 1 and Table
3's worst case attack through them), trained on the cached bank features (backbone frozen), and
their agreement with the real kNN. Two blocks, one per CE weight of the original:
`single` (lam_single, for one-layer attacks) and `multi` (lam_multi, for attacks on several layers);
the attack's own CE share is tuned (stage tune). The agreement is measured on the held-out images and
on the evaluation images, those the attacks run on (measured only: nothing is chosen by it)."""
from askknn.knn_blocks import knn_agreement, save_blocks, train_knn_block
from askknn.bank import FeatureBank, extract_features
from askknn.data import PreparedData
from askknn.io import write_json
from askknn.params import load_params
from askknn.registry import METHODS
from askknn.shared import METRICS as METRIC_NAMES
from askknn.runtime import (METRICS_DIR, PREPARED, advknn_block_path, bank_path, device, load_trained, run_stage,
                            stage_arguments)


def main() -> None:
    method, metric, seed = stage_arguments(__doc__, "method", "metric", "seed",
                                          choices={"method": list(METHODS), "metric": METRIC_NAMES})
    params = load_params()
    cfg, k, layers = params["attacks"]["advknn"], params["dknn"]["k"], params["dknn"]["layers"]
    bank, extra = FeatureBank.load(bank_path(method, seed))
    held_out = {layer: extra[f"val_{layer}"] for layer in layers}
    data = PreparedData(PREPARED)
    evaluated = extract_features(load_trained(method, seed, params, data), data.split("eval")[0], layers,
                                 params["dknn"]["batch_size"], device())
    blocks, summary = {}, {}
    for name in ("single", "multi"):
        blocks[name], history = train_knn_block(bank, layers, k, metric, epochs=cfg["epochs"], lr=cfg["lr"],
                                                lam=cfg[f"lam_{name}"], seed=params["data"]["seed"],
                                                device=device())
        summary[name] = {"lam": cfg[f"lam_{name}"], "final_loss": history[-1],
                         "agreement_with_knn": knn_agreement(blocks[name], bank, held_out, layers, k, metric),
                         "agreement_on_evaluation_images": knn_agreement(blocks[name], bank, evaluated, layers, k,
                                                                         metric)}
    save_blocks(advknn_block_path(method, metric), blocks)
    write_json(METRICS_DIR / "advknn" / f"{method}_{metric}.json",
               {"method": method, "seed": seed, "metric": metric, "epochs": cfg["epochs"],
                "evaluation_images": len(next(iter(evaluated.values()))), **summary})


if __name__ == "__main__":
    run_stage(main)
