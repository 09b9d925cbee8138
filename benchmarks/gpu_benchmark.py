"""GPU benchmark (not a test): on the CUDA device present, the `cifar10` preset's model (vgg16_bn)
on synthetic CIFAR-sized data:

- one AT epoch (the preset's PGD, batch, augmentation) in fp32 and in bf16, extrapolated from the
  second of two short epochs (the first pays for cudnn.benchmark's search);
- the kNN search of one attack batch against the preset's bank size, faiss on the CPU against exact
  torch search on the device;
- one ASK-Atk batch against its floor (steps x forward to conv4 + backward to the input), measured
  alternately in one process, median of `--repeats`.

Writes reports/gpu_benchmark.md with the device's name. On a machine without CUDA it says so and
exits with status 0.   Run:  python benchmarks/gpu_benchmark.py
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from askknn.attacks.ask import ASKAttack
from askknn.bank import FeatureBank
from askknn.data import Prepared, PreparedData, save_prepared
from askknn.io import write_text
from askknn.models import create_model
from askknn.params import read_yaml
from askknn.runtime import REPORTS
from askknn.training import TrainConfig, train_model

ROOT = Path(__file__).resolve().parents[1]
TRAIN_IMAGES = 49_000   # the cifar10 preset's training split (50,000 less 1,000 held out)


def timed(fn) -> float:
    torch.cuda.synchronize()
    tic = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return time.perf_counter() - tic


def synthetic(folder: Path, images: int, val: int) -> PreparedData:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (images + val, 3, 32, 32), dtype=np.uint8)
    y = np.arange(images + val) % 10
    save_prepared(folder, Prepared(x, y, x[:val], y[:val]),
                  {"train": np.arange(images), "val": np.arange(images, images + val),
                   "bank": np.arange(val), "eval": np.arange(val)})
    return PreparedData(folder)


def at_epoch(train: dict, precision: str, batches: int) -> float:
    """Seconds of one AT epoch of the preset, extrapolated from `batches` batches."""
    cfg = dataclasses.replace(TrainConfig.from_params(train), epochs=2, val_pgd_steps=1, precision=precision)
    with tempfile.TemporaryDirectory() as tmp:
        data = synthetic(Path(tmp), batches * cfg.batch_size, 100)
        model = create_model("vgg16_bn")
        history = train_model(model, data, cfg, Path(tmp) / "checkpoint.pt", device="cuda", log=lambda _: None)
    return history[-1]["epoch_seconds"] / batches * (TRAIN_IMAGES / cfg.batch_size)


def knn_search(bank_size: int, dims: int, batch: int, k: int, repeats: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    feats = {"conv4": rng.normal(size=(bank_size, dims)).astype(np.float32)}
    labels = np.arange(bank_size) % 10
    queries = torch.from_numpy(rng.normal(size=(batch, dims)).astype(np.float32)).cuda()
    out = {}
    for search in ("faiss", "torch"):
        bank = FeatureBank(feats, labels, search=search, device="cuda")
        bank.search_per_class("conv4", "cosine", queries, k)   # builds the indices
        out[search] = statistics.median(timed(lambda: bank.search_per_class("conv4", "cosine", queries, k))
                                        for _ in range(repeats))
    return out


def ask_against_floor(bank_size: int, batch: int, steps: int, repeats: int) -> dict[str, float]:
    torch.manual_seed(0)
    model = create_model("vgg16_bn").cuda().eval()
    layer = "conv4"
    with torch.no_grad():
        dims = model.features(torch.rand(1, 3, 32, 32, device="cuda"), [layer])[layer].shape[1]
    bank = FeatureBank({layer: np.random.default_rng(0).normal(size=(bank_size, dims)).astype(np.float32)},
                       np.arange(bank_size) % 10)
    x, y = torch.rand(batch, 3, 32, 32, device="cuda"), torch.arange(batch, device="cuda") % 10
    attack = ASKAttack(bank, [layer], 8 / 255, "cosine", tau=0.03, steps=steps, seed=0)

    def floor():
        x_adv = x.clone()
        for _ in range(steps):
            x_adv.requires_grad_(True)
            grad, = torch.autograd.grad(model.features(x_adv, [layer])[layer].sum(), x_adv)
            x_adv = (x_adv.detach() + 1e-3 * grad.sign()).clamp(0, 1)

    floor(), attack(model, x, y)   # warm-up
    floors, attacks = [], []
    for _ in range(repeats):       # alternately, so drifts of the machine hit both alike
        floors.append(timed(floor))
        attacks.append(timed(lambda: attack(model, x, y)))
    return {"floor": statistics.median(floors), "attack": statistics.median(attacks)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=40, help="batches per timed training epoch")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device is present: nothing to benchmark; reports/gpu_benchmark.md is left as it is")
        return 0
    preset = read_yaml(ROOT / "presets" / "cifar10.yaml")
    name = torch.cuda.get_device_name()
    epochs = {p: at_epoch(preset["train"], p, args.batches) for p in ("fp32", "bf16")}
    dims = 512 * 2 * 2   # vgg16_bn's conv4 at 32x32
    knn = knn_search(preset["data"]["bank_size"], dims, preset["attacks"]["batch_size"], preset["dknn"]["k"],
                     args.repeats)
    ask = ask_against_floor(preset["data"]["bank_size"], preset["attacks"]["batch_size"],
                            preset["attacks"]["steps"], args.repeats)
    lines = [
        "# GPU benchmark\n",
        f"Device: **{name}** (torch {torch.__version__}, CUDA {torch.version.cuda}). Synthetic CIFAR-10-sized data, "
        f"the `cifar10` preset's settings; written by `python benchmarks/gpu_benchmark.py`. Timings vary from "
        f"run to run.\n",
        "| measurement | seconds |", "|---|---|",
        f"| AT epoch, vgg16_bn, fp32 (extrapolated to {TRAIN_IMAGES:,} images) | {epochs['fp32']:.1f} |",
        f"| AT epoch, vgg16_bn, bf16 + channels_last | {epochs['bf16']:.1f} |",
        f"| kNN search per class, {preset['attacks']['batch_size']} queries, bank {preset['data']['bank_size']:,} "
        f"x {dims}: faiss (CPU) | {knn['faiss']:.4f} |",
        f"| the same, exact torch search on the device | {knn['torch']:.4f} |",
        f"| ASK-Atk batch ({preset['attacks']['batch_size']} images, {preset['attacks']['steps']} steps, conv4) "
        f"| {ask['attack']:.3f} |",
        f"| its floor (steps x forward to conv4 + backward) | {ask['floor']:.3f} |",
        f"\nbf16 speed-up per epoch: {epochs['fp32'] / epochs['bf16']:.2f}x; the 200-epoch AT run of the preset "
        f"then takes about {200 * epochs['bf16'] / 3600:.1f} h (fp32: {200 * epochs['fp32'] / 3600:.1f} h). "
        f"ASK-Atk / floor: {ask['attack'] / ask['floor']:.2f}; device search "
        f"{knn['faiss'] / knn['torch']:.1f}x faster than faiss on the CPU.\n",
    ]
    write_text(REPORTS / "gpu_benchmark.md", "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
