"""Stage train@<method>-<seed>: adversarial training (AT) or a defense built on it, under one training
seed; writes models/<method>_seed<seed>.safetensors.

With train.launcher: torchrun it starts itself again under torchrun (train.nproc processes, DDP);
started by torchrun (also by hand, e.g. across machines) it joins the process group and rank 0
writes the outputs."""
import dataclasses
from pathlib import Path

from askknn.data import IMAGES, TRAIN_SPLITS, PreparedData, sha256_file
from askknn.defenses import extra_term, train_config
from askknn.distributed import is_main, rank_and_world, relaunch, setup, teardown, under_torchrun
from askknn.io import save_weights, write_json, write_text
from askknn.params import load_params
from askknn.registry import METHODS
from askknn.runtime import (METRICS_DIR, MODELS, PLOTS, PREPARED, config_hash, device, model_name, model_path,
                            new_model, run_stage, seed_everything, stage_arguments)
from askknn.training import effective_precision, train_model


def main() -> None:
    method, seed = stage_arguments(__doc__, "method", "seed", choices={"method": list(METHODS)})
    params = load_params()
    if params["train"]["launcher"] == "torchrun" and not under_torchrun():
        relaunch(__file__, [method, str(seed)], params["train"]["nproc"])
    run_device = setup() if under_torchrun() else device()
    cfg = train_config(method, params, seed)
    cfg = dataclasses.replace(cfg, precision=effective_precision(cfg.precision, run_device))
    seed_everything(cfg.seed)
    data = PreparedData(PREPARED, TRAIN_SPLITS)
    model = new_model(params, data)
    term = extra_term(method, params, data, cfg)
    checkpoint = checkpoint_path(method, seed, params)
    history = train_model(model, data, cfg, checkpoint, term, run_device)
    if is_main():
        write_outputs(method, seed, params, cfg, model, history)
        checkpoint.unlink()
    teardown()


def checkpoint_path(method: str, seed: int, params: dict) -> Path:
    """The checkpoint is named by the full configuration and the data it trains on (not the bank or
    evaluation split), so a changed setting never resumes a stale run. The process count is left out:
    a run resumed with another one finds its checkpoint and is refused with what to do
    (CheckpointMismatch) instead of starting over beside it."""
    train = {k: v for k, v in params["train"].items() if k not in ("nproc", "launcher")}
    key = config_hash(*(sha256_file(PREPARED / f) for f in (IMAGES, TRAIN_SPLITS)), params["model"],
                      train, params["methods"][method], seed)
    return MODELS / "checkpoints" / f"{model_name(method, seed)}-{key}.pt"


def write_outputs(method: str, seed: int, params: dict, cfg, model, history: list[dict]) -> None:
    name = model_name(method, seed)
    save_weights(model_path(method, seed), model.state_dict(),
                 {"model": params["model"]["name"], "method": method, "seed": seed})
    rows = ["epoch,train_loss,val_loss,val_clean_accuracy,val_pgd_accuracy,epoch_seconds"]
    rows += [",".join(str(h[c]) for c in rows[0].split(",")) for h in history]
    write_text(PLOTS / f"train_{name}.csv", "\n".join(rows) + "\n")
    last, world = history[-1], rank_and_world()[1]
    write_json(METRICS_DIR / "train" / f"{name}.json", {
        "method": method, "seed": seed, "epochs": last["epoch"], "global_batch": cfg.global_batch(world),
        "lr": cfg.peak_lr(world),
        "val_clean_accuracy": last["val_clean_accuracy"],
        "val_pgd_accuracy": last["val_pgd_accuracy"],
        "epoch_seconds": sum(h["epoch_seconds"] for h in history) / len(history)})


if __name__ == "__main__":
    run_stage(main)
