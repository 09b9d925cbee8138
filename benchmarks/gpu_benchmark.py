"""GPU benchmark (not a test): on the CUDA device present, the `cifar10` preset's model (vgg16_bn)
on synthetic CIFAR-sized data:

- one AT epoch (the preset's PGD, batch, augmentation) in fp32, in bf16, and in bf16 with the model
  under torch.compile, extrapolated from the second of two short epochs (the first pays for
  cudnn.benchmark's search and the compilation);
- the kNN search of one attack batch against the preset's bank size, faiss on the CPU against exact
  torch search on the device;
- one ASK-Atk batch, cosine and l2, against its floor (steps x forward to conv4 + backward to the
  input), measured alternately in one process, median of `--repeats`, and split into the references'
  search (once a batch) and the steps;
- the start-up of a stage's process (Python, torch, the package, CUDA's context), median of 3;
- on CUDA, the AT epoch again with every training step replayed as one CUDA graph (train.cuda_graphs),
  fp32 and bf16: at the preset's batch of 128 the host's kernel launches bound the epoch;
- ASK-Atk again with its steps replayed as CUDA graphs (attacks.cuda_graphs) against its floor replayed
  as one graph (the floor without the host's launches), and how many pixels of its result differ from
  the eager attack's (on the CPU, a stand-in that runs the captured call stands for the graph);
- a torch.profiler table of a few bf16 AT batches (gpu_profile.md, last): where the time goes.

Writes gpu_benchmark.md (in reports/, or --out) with the device's name, again after every
measurement, so a run cut short keeps what it measured. On a machine without CUDA it says so and
exits with status 0; `--device cpu` runs the same code on the CPU (the test does, at toy sizes).
Run:  python benchmarks/gpu_benchmark.py
"""
from __future__ import annotations

import argparse
import contextlib
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
from askknn.cuda_graphs import GraphedClimb, capture_cuda_graph, side_stream
from askknn.data import Prepared, PreparedData, save_prepared
from askknn.io import write_text
from askknn.models import create_model
from askknn.params import preset_config
from askknn.runtime import REPORTS
from askknn.training import TrainConfig, train_model

ROOT = Path(__file__).resolve().parents[1]
TRAIN_IMAGES = 49_000   # the cifar10 preset's training split (50,000 less 1,000 held out)


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: str) -> float:
    sync(device)
    tic = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - tic


def synthetic(folder: Path, images: int, val: int) -> PreparedData:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (images + val, 3, 32, 32), dtype=np.uint8)
    y = np.arange(images + val) % 10
    save_prepared(folder, Prepared(x, y, x[:val], y[:val]),
                  {"train": np.arange(images), "val": np.arange(images, images + val),
                   "bank": np.arange(val), "eval": np.arange(val)})
    return PreparedData(folder)


def at_epoch(cfg: TrainConfig, precision: str, batches: int, device: str, compiled: bool = False) -> float:
    """Seconds of one AT epoch of the preset, extrapolated from `batches` batches; `compiled`: the
    model's forward (which the attack's passes and the training pass both go through) under torch.compile."""
    cfg = dataclasses.replace(cfg, epochs=2, val_pgd_steps=1, precision=precision)
    with tempfile.TemporaryDirectory() as tmp:
        data = synthetic(Path(tmp), batches * cfg.batch_size, 100)
        model = create_model("vgg16_bn")
        if compiled:
            model.compile()
        history = train_model(model, data, cfg, Path(tmp) / "checkpoint.pt", device=device, log=lambda _: None)
    return history[-1]["epoch_seconds"] / batches * (TRAIN_IMAGES / cfg.batch_size)


def knn_search(bank_size: int, dims: int, batch: int, k: int, repeats: int, device: str) -> dict[str, float]:
    rng = np.random.default_rng(0)
    feats = {"conv4": rng.normal(size=(bank_size, dims)).astype(np.float32)}
    labels = np.arange(bank_size) % 10
    queries = torch.from_numpy(rng.normal(size=(batch, dims)).astype(np.float32)).to(device)
    import importlib.util
    out = {"faiss": float("nan")}   # faiss is not installed on every GPU machine
    for search in ("faiss", "torch") if importlib.util.find_spec("faiss") else ("torch",):
        bank = FeatureBank(feats, labels, search=search, device=device)
        bank.per_class("conv4", "cosine", queries, k)   # builds the indices
        out[search] = statistics.median(timed(lambda: bank.per_class("conv4", "cosine", queries, k), device)
                                        for _ in range(repeats))
    return out


LAYER = "conv4"
METRICS = (("cosine", 0.03), ("l2", 1.0))   # (metric, tau) of the ASK-Atk rows


def ask_setting(bank_size: int, batch: int, device: str):
    """vgg16_bn (eval mode), a random conv4 bank of `bank_size` points and a batch of random images."""
    torch.manual_seed(0)
    model = create_model("vgg16_bn").to(device).eval()
    with torch.no_grad():
        dims = model.features(torch.rand(1, 3, 32, 32, device=device), [LAYER])[LAYER].shape[1]
    bank = FeatureBank({LAYER: np.random.default_rng(0).normal(size=(bank_size, dims)).astype(np.float32)},
                       np.arange(bank_size) % 10, device=device)
    return model, bank, torch.rand(batch, 3, 32, 32, device=device), torch.arange(batch, device=device) % 10


def floor_of(model, x: torch.Tensor, steps: int):
    """The attack's compute floor: steps x (forward to conv4 + backward to the input)."""
    def floor() -> torch.Tensor:
        x_adv = x.clone()
        for _ in range(steps):
            x_adv.requires_grad_(True)
            grad, = torch.autograd.grad(model.features(x_adv, [LAYER])[LAYER].sum(), x_adv)
            x_adv = (x_adv.detach() + 1e-3 * grad.sign()).clamp(0, 1)
        return x_adv
    return floor


def alternately(runs: dict, repeats: int, device: str) -> dict[str, float]:
    """Median seconds of each run, timed in turn `repeats` times, so drifts of the machine hit all alike."""
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            times[name].append(timed(run, device))
    return {name: statistics.median(seconds) for name, seconds in times.items()}


def ask_attack(bank, steps: int, metric: str, tau: float) -> ASKAttack:
    return ASKAttack(bank, [LAYER], 8 / 255, metric, tau=tau, steps=steps, seed=0)


def ask_against_floor(bank_size: int, batch: int, steps: int, repeats: int, metric: str,
                      tau: float, device: str) -> dict[str, float]:
    model, bank, x, y = ask_setting(bank_size, batch, device)
    attack, floor = ask_attack(bank, steps, metric, tau), floor_of(model, x, steps)
    floor(), attack(model, x, y)   # warm-up
    context = attack.prepare(model, x, y)
    return alternately({"floor": floor, "attack": lambda: attack(model, x, y),
                        "prepare": lambda: attack.prepare(model, x, y),            # references, once a batch
                        "ascend": lambda: attack.ascend(model, x, y, context)},    # the steps
                       repeats, device)


def graph_tools(device: str):
    """CUDA graph capture and its warm-up; on the CPU (test runs at toy sizes) stand-ins that run the
    captured call at every replay, so that the same code runs."""
    if device == "cuda":
        return capture_cuda_graph, side_stream
    return (lambda run: run), contextlib.nullcontext


def ask_graphed_against_floor(bank_size: int, batch: int, steps: int, repeats: int, metric: str,
                              tau: float, device: str) -> dict[str, float]:
    """ASK-Atk with its steps replayed as CUDA graphs (attacks.cuda_graphs) against its floor replayed
    as one graph, and how far its result is from the eager attack's (same seed, third batch)."""
    capture, warm_up = graph_tools(device)
    model, bank, x, y = ask_setting(bank_size, batch, device)
    floor = floor_of(model, x, steps)
    with warm_up():
        floor()
    floor_replay = capture(floor)
    eager, graphed = ask_attack(bank, steps, metric, tau), ask_attack(bank, steps, metric, tau)
    graphed.climb = GraphedClimb(graphed.climb, capture, warm_up)
    for _ in range(3):   # warm-up, capture, replay
        apart = (graphed(model, x, y) - eager(model, x, y)).abs()
    times = alternately({"floor": floor_replay, "attack": lambda: graphed(model, x, y)}, repeats, device)
    return {**times, "differ": int((apart > 0).sum()), "pixels": apart.numel(), "max_apart": float(apart.max())}


def stage_start_up(device: str) -> float:
    """Seconds for a fresh process to import what a stage imports and open the CUDA context."""
    code = f"import torch, askknn.experiments, askknn.training; torch.zeros(1, device='{device}')"
    times = []
    for _ in range(3):
        tic = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
        times.append(time.perf_counter() - tic)
    return statistics.median(times)


def profile_at(cfg: TrainConfig, device: str, batches: int = 6) -> str:
    """torch.profiler's table (top 30 by device time) of a few bf16 AT batches of the preset."""
    from torch.profiler import ProfilerActivity, profile
    cfg = dataclasses.replace(cfg, epochs=1, val_pgd_steps=1, precision="bf16")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with tempfile.TemporaryDirectory() as tmp:
        data = synthetic(Path(tmp), batches * cfg.batch_size, 100)
        train_model(create_model("vgg16_bn"), data, cfg, Path(tmp) / "warm.pt", device=device, log=lambda _: None)
        with profile(activities=activities) as prof:
            train_model(create_model("vgg16_bn"), data, cfg, Path(tmp) / "timed.pt", device=device,
                        log=lambda _: None)
    sort = "device_time_total" if device == "cuda" else "cpu_time_total"
    return prof.key_averages().table(sort_by=sort, row_limit=30, max_name_column_width=60)


def epoch_row(label: str, seconds: float) -> str:
    return f"| AT epoch, vgg16_bn, {label} (extrapolated to {TRAIN_IMAGES:,} images) | {seconds:.1f} |"


def failed_row(label: str, error: Exception) -> str:
    """The row of a measurement whose CUDA graph capture failed: the error's first line."""
    return f"| {label} | failed: {type(error).__name__}: {str(error).splitlines()[0][:160]} |"


def cuda_graph_epochs(train: TrainConfig, batches: int, device: str, report: "Report") -> None:
    """The AT epoch with every training step replayed as one CUDA graph (train.cuda_graphs), fp32 and
    bf16; a capture that fails is reported in the row, not raised."""
    graphed = dataclasses.replace(train, cuda_graphs=True)
    seconds = {}
    for label, precision in (("fp32 + CUDA graphs", "fp32"), ("bf16 + channels_last + CUDA graphs", "bf16")):
        try:
            seconds[precision] = at_epoch(graphed, precision, batches, device)
        except Exception as error:   # the benchmark reports it and goes on
            report.add(failed_row(f"AT epoch, vgg16_bn, {label}", error))
            continue
        report.add(epoch_row(label, seconds[precision]))
    if len(seconds) == 2:
        report.add(note=f"With CUDA graphs: bf16 epoch / fp32 epoch {seconds['bf16'] / seconds['fp32']:.2f}.")


def graphed_attack_rows(bank_size: int, batch: int, steps: int, repeats: int, device: str, report: "Report") -> None:
    """ASK-Atk's steps replayed as CUDA graphs against the floor replayed as one graph, cosine and l2; a
    capture that fails is reported in the row, not raised."""
    for metric, tau in METRICS:
        label = f"ASK-Atk batch, {metric}, steps replayed as CUDA graphs (attacks.cuda_graphs) / its floor as one graph"
        try:
            a = ask_graphed_against_floor(bank_size, batch, steps, repeats, metric, tau, device)
        except Exception as error:   # the benchmark reports it and goes on
            report.add(failed_row(label, error))
            continue
        report.add(f"| {label} | {a['attack']:.3f} / {a['floor']:.3f} = {a['attack'] / a['floor']:.2f}x |")
        report.add(f"| of which: pixels where the graphed attack's result differs from the eager one's, {metric} "
                   f"| {a['differ']} of {a['pixels']:,} (at most {a['max_apart']:.2g} apart) |")


class Report:
    """gpu_benchmark.md, written again after every measurement (a run cut short keeps what it has)."""

    def __init__(self, path: Path, device: str, settings: str):
        self.path, self.rows, self.notes = path, [], []
        name = torch.cuda.get_device_name() if device == "cuda" else "the CPU (a test run at toy sizes)"
        version = f"torch {torch.__version__}" + (f", CUDA {torch.version.cuda}" if device == "cuda" else "")
        self.header = (f"# GPU benchmark\n\nDevice: **{name}** ({version}). Synthetic CIFAR-10-sized data, {settings}; "
                       f"written by `python benchmarks/gpu_benchmark.py`. Timings vary from run to run.\n")

    def add(self, row: str = "", note: str = "") -> None:
        self.rows += [row] if row else []
        self.notes += [note] if note else []
        text = "\n".join([self.header, "| measurement | seconds |", "|---|---|", *self.rows, "", *self.notes]) + "\n"
        write_text(self.path, text)
        print(text, flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=40, help="batches per timed training epoch")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--out", type=Path, default=REPORTS, help="folder of gpu_benchmark.md and gpu_profile.md")
    parser.add_argument("--batch-size", type=int, help="training and attack batch instead of the preset's (toy runs)")
    parser.add_argument("--bank-size", type=int, help="instead of the preset's (toy runs)")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                        help="also time the epoch under torch.compile (last)")
    args = parser.parse_args(argv)
    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device is present: nothing to benchmark; reports/gpu_benchmark.md is left as it is")
        return 0
    preset = preset_config("cifar10", ROOT)
    train = TrainConfig.from_params(preset["train"])
    train = dataclasses.replace(train, batch_size=args.batch_size or train.batch_size)
    bank_size = args.bank_size or preset["data"]["bank_size"]
    batch, steps = args.batch_size or preset["attacks"]["batch_size"], preset["attacks"]["steps"]
    report = Report(args.out / "gpu_benchmark.md", device,
                    f"the `cifar10` preset's settings (training batch {train.batch_size}, attack batch {batch}, "
                    f"bank {bank_size:,})")
    epochs = {}
    for label, precision in (("fp32", "fp32"), ("bf16 + channels_last", "bf16")):
        epochs[label] = at_epoch(train, precision, args.batches, device)
        report.add(epoch_row(label, epochs[label]))
    report.add(note=f"bf16 epoch / fp32 epoch: {epochs['bf16 + channels_last'] / epochs['fp32']:.2f}; the "
                    f"200-epoch AT run of the preset then takes about {200 * min(epochs.values()) / 3600:.1f} h.")
    for metric, tau in METRICS:
        a = ask_against_floor(bank_size, batch, steps, args.repeats, metric, tau, device)
        report.add(f"| ASK-Atk batch, {metric} ({batch} images, {steps} steps, conv4) / its floor (steps x forward "
                   f"to conv4 + backward) | {a['attack']:.3f} / {a['floor']:.3f} = {a['attack'] / a['floor']:.2f}x |")
        report.add(f"| of which: references found once a batch; the steps (random start included), {metric} | "
                   f"{a['prepare']:.4f}; {a['ascend']:.3f} |")
    dims = 512 * 2 * 2   # vgg16_bn's conv4 at 32x32
    knn = knn_search(bank_size, dims, batch, preset["dknn"]["k"], args.repeats, device)
    for search, where in (("faiss", "faiss (CPU)"), ("torch", f"exact torch search on the {device}")):
        if knn[search] == knn[search]:   # NaN when faiss is not installed
            report.add(f"| kNN search per class, {batch} queries, bank {bank_size:,} x {dims}: {where} | "
                       f"{knn[search]:.4f} |")
    report.add(f"| start-up of one stage's process (imports, {device} context) | {stage_start_up(device):.1f} |")
    if device == "cuda":   # after the rest: a capture that fails may leave the device unusable
        cuda_graph_epochs(train, args.batches, device, report)
    graphed_attack_rows(bank_size, batch, steps, args.repeats, device, report)
    if args.compile:
        label = "bf16 + channels_last + torch.compile"   # after the rest: its compilation may outlast a short call
        epochs[label] = at_epoch(train, "bf16", args.batches, device, compiled=True)
        report.add(epoch_row(label, epochs[label]),
                   note=f"With torch.compile: bf16 epoch / fp32 epoch {epochs[label] / epochs['fp32']:.2f}.")
    name = torch.cuda.get_device_name() if device == "cuda" else "the CPU"
    write_text(args.out / "gpu_profile.md", f"# Profile of a bf16 AT epoch of 6 batches on {name}\n\n"
               f"Written by `python benchmarks/gpu_benchmark.py` (torch.profiler, sorted by device time); the "
               f"epoch's set-up, held-out check and checkpoint are in it too.\n\n"
               f"```\n{profile_at(train, device)}\n```\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
