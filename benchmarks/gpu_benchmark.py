"""GPU benchmark (not a test): on the CUDA device present, the `cifar10` preset's model (vgg16_bn)
on synthetic CIFAR-sized data:

- one AT epoch (the preset's PGD, batch, augmentation) in fp32 and in bf16, extrapolated from the
  second of two short epochs (the first pays for cudnn.benchmark's search);
- the kNN search of one attack batch against the preset's bank size, faiss on the CPU against exact
  torch search on the device;
- one ASK-Atk batch, cosine and l2, against its floor (steps x forward to conv4 + backward to the
  input), measured alternately in one process, median of `--repeats`;
- the start-up of a stage's process (Python, torch, the package, CUDA's context), median of 3;
- a torch.profiler table of a few bf16 AT batches (reports/gpu_profile.md): where the time goes.

Writes reports/gpu_benchmark.md with the device's name. On a machine without CUDA it says so and
exits with status 0.   Run:  python benchmarks/gpu_benchmark.py
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import subprocess
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
    import importlib.util
    out = {"faiss": float("nan")}   # faiss is not installed on every GPU machine
    for search in ("faiss", "torch") if importlib.util.find_spec("faiss") else ("torch",):
        bank = FeatureBank(feats, labels, search=search, device="cuda")
        bank.search_per_class("conv4", "cosine", queries, k)   # builds the indices
        out[search] = statistics.median(timed(lambda: bank.search_per_class("conv4", "cosine", queries, k))
                                        for _ in range(repeats))
    return out


def ask_against_floor(bank_size: int, batch: int, steps: int, repeats: int, metric: str,
                      tau: float) -> dict[str, float]:
    torch.manual_seed(0)
    model = create_model("vgg16_bn").cuda().eval()
    layer = "conv4"
    with torch.no_grad():
        dims = model.features(torch.rand(1, 3, 32, 32, device="cuda"), [layer])[layer].shape[1]
    bank = FeatureBank({layer: np.random.default_rng(0).normal(size=(bank_size, dims)).astype(np.float32)},
                       np.arange(bank_size) % 10)
    x, y = torch.rand(batch, 3, 32, 32, device="cuda"), torch.arange(batch, device="cuda") % 10
    attack = ASKAttack(bank, [layer], 8 / 255, metric, tau=tau, steps=steps, seed=0)

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


def stage_start_up() -> float:
    """Seconds for a fresh process to import what a stage imports and open the CUDA context."""
    code = "import torch, askknn.experiments, askknn.training; torch.zeros(1, device='cuda')"
    times = []
    for _ in range(3):
        tic = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
        times.append(time.perf_counter() - tic)
    return statistics.median(times)


def profile_at(train: dict, batches: int = 6) -> str:
    """torch.profiler's table (top 30 by CUDA time) of a few bf16 AT batches of the preset."""
    from torch.profiler import ProfilerActivity, profile
    cfg = dataclasses.replace(TrainConfig.from_params(train), epochs=1, val_pgd_steps=1, precision="bf16")
    with tempfile.TemporaryDirectory() as tmp:
        data = synthetic(Path(tmp), batches * cfg.batch_size, 100)
        train_model(create_model("vgg16_bn"), data, cfg, Path(tmp) / "warm.pt", device="cuda", log=lambda _: None)
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            train_model(create_model("vgg16_bn"), data, cfg, Path(tmp) / "timed.pt", device="cuda",
                        log=lambda _: None)
    events = prof.key_averages()
    try:
        return events.table(sort_by="device_time_total", row_limit=30, max_name_column_width=60)
    except (AttributeError, KeyError):   # torch versions that name it after CUDA
        return events.table(sort_by="cuda_time_total", row_limit=30, max_name_column_width=60)


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
    ask = {metric: ask_against_floor(preset["data"]["bank_size"], preset["attacks"]["batch_size"],
                                     preset["attacks"]["steps"], args.repeats, metric, tau)
           for metric, tau in (("cosine", 0.03), ("l2", 1.0))}
    start_up = stage_start_up()
    write_text(REPORTS / "gpu_profile.md", f"# Profile of 6 bf16 AT batches on {name}\n\n"
               f"Written by `python benchmarks/gpu_benchmark.py` (torch.profiler, sorted by CUDA time).\n\n"
               f"```\n{profile_at(preset['train'])}\n```\n")
    lines = [
        "# GPU benchmark\n",
        f"Device: **{name}** (torch {torch.__version__}, CUDA {torch.version.cuda}). Synthetic CIFAR-10-sized data, "
        f"the `cifar10` preset's settings; written by `python benchmarks/gpu_benchmark.py`. Timings vary from "
        f"run to run.\n",
        "| measurement | seconds |", "|---|---|",
        f"| AT epoch, vgg16_bn, fp32 (extrapolated to {TRAIN_IMAGES:,} images) | {epochs['fp32']:.1f} |",
        f"| AT epoch, vgg16_bn, bf16 + channels_last | {epochs['bf16']:.1f} |",
        *([f"| kNN search per class, {preset['attacks']['batch_size']} queries, bank "
           f"{preset['data']['bank_size']:,} x {dims}: faiss (CPU) | {knn['faiss']:.4f} |"]
          if knn["faiss"] == knn["faiss"] else []),   # NaN when faiss is not installed
        f"| kNN search per class, {preset['attacks']['batch_size']} queries, bank {preset['data']['bank_size']:,} "
        f"x {dims}: exact torch search on the device | {knn['torch']:.4f} |",
        *(f"| ASK-Atk batch, {metric} ({preset['attacks']['batch_size']} images, {preset['attacks']['steps']} "
          f"steps, conv4) / its floor (steps x forward to conv4 + backward) | {a['attack']:.3f} / {a['floor']:.3f} "
          f"= {a['attack'] / a['floor']:.2f}x |" for metric, a in ask.items()),
        f"| start-up of one stage's process (imports, CUDA context) | {start_up:.1f} |",
        f"\nbf16 speed-up per epoch: {epochs['fp32'] / epochs['bf16']:.2f}x; the 200-epoch AT run of the preset "
        f"then takes about {200 * epochs['bf16'] / 3600:.1f} h (fp32: {200 * epochs['fp32'] / 3600:.1f} h). "
        f"ASK-Atk / floor: {ask['cosine']['attack'] / ask['cosine']['floor']:.2f} (cosine), "
        f"{ask['l2']['attack'] / ask['l2']['floor']:.2f} (l2)"
        + (f"; device search {knn['faiss'] / knn['torch']:.1f}x faster than faiss on the CPU"
           if knn["faiss"] == knn["faiss"] else "") + ".\n",
    ]
    write_text(REPORTS / "gpu_benchmark.md", "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
