"""Stage prepare: load the dataset, store it as uint8 arrays, draw the splits from one seed.

metrics/data.json records the split sizes and, for an external source (a path, or Debian's
Fashion-MNIST files), `source_sha256`: the content hash of what was read, so a replaced archive or
folder shows in `dvc metrics diff` (an unpacked archive is unpacked again when its hash changes)."""
from askknn.data import load_dataset, make_splits, save_prepared
from askknn.io import write_json
from askknn.params import load_params
from askknn.runtime import METRICS_DIR, PREPARED, run_stage


def main() -> None:
    data = load_params()["data"]
    dataset = load_dataset(data["dataset"], data["source"], data["root"], data["seed"])
    splits = make_splits(dataset.y_train, dataset.y_test, val_size=data["val_size"], bank_size=data["bank_size"],
                         eval_size=data["eval_size"], train_size=data["train_size"], seed=data["seed"])
    save_prepared(PREPARED, dataset, splits)
    write_json(METRICS_DIR / "data.json", {"dataset": data["dataset"], "image_shape": list(dataset.x_train.shape[1:]),
                                       "source": data["source"], "source_sha256": dataset.source_sha256,
                                       **{f"{k}_images": int(len(v)) for k, v in splits.items()}})


if __name__ == "__main__":
    run_stage(main)
