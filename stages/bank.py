"""Stage bank@<method>-<seed>: features of the bank and the held-out images at the DkNN layers, from
the model of `method` trained with seed `seed`."""
from askknn.bank import FeatureBank, extract_features
from askknn.data import PreparedData
from askknn.params import load_params
from askknn.registry import METHODS
from askknn.runtime import PREPARED, bank_path, device, load_trained, run_stage, stage_arguments


def main() -> None:
    method, seed = stage_arguments(__doc__, "method", "seed", choices={"method": list(METHODS)})
    params = load_params()
    data = PreparedData(PREPARED)
    model = load_trained(method, seed, params, data)
    layers, batch = params["dknn"]["layers"], params["dknn"]["batch_size"]
    x_bank, y_bank = data.split("bank")
    x_val, y_val = data.split("val")
    held_out = extract_features(model, x_val, layers, batch, device())
    bank = FeatureBank(extract_features(model, x_bank, layers, batch, device()), y_bank.numpy())
    bank.save(bank_path(method, seed), val_labels=y_val.numpy(), **{f"val_{k}": v for k, v in held_out.items()})


if __name__ == "__main__":
    run_stage(main)
