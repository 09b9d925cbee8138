"""Benchmark: each attack's cost against its compute floor, on the AT model of the current preset.

floor = steps x (forward to the deepest attacked layer + backward to the input) at the same batch
size; the target is attack time <= 1.1 x floor on the CPU, 1.15 x on a GPU. The floor and the
attack are timed alternately in the same process and each ratio is the median of `--repeats` (>= 5)
paired measurements, so a noisy neighbour slows both sides alike. Writes reports/benchmark.md and
reports/benchmark.json.
Run after `dvc repro` (it needs the AT model, its bank and tune@at):  python benchmarks/attack_cost.py
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import time
from datetime import datetime, timezone

import numpy as np
import torch

from askknn.attacks.ask import ASKAttack
from askknn.bank import FeatureBank, extract_features
from askknn.data import to_float
from askknn.experiments import AttackSuite, layer_sets
from askknn.io import write_json, write_text
from askknn.models import create_model
from askknn.params import load_params
from askknn.runtime import REPORTS, device, layer_set_name

TARGETS = {"cpu": 1.1, "cuda": 1.15}   # the project's targets: attack time / floor, per device type
TARGET = TARGETS[device().type]


MALLOC_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")   # the Makefile's and dvc.yaml's


def malloc_settings() -> str:
    """The glibc malloc settings this process runs under: they change CPU timings by 15-25%."""
    found = [f"{k}={os.environ[k]}" for k in MALLOC_SETTINGS if k in os.environ]
    return ", ".join(found) or "glibc's defaults (not the Makefile's settings)"


def seconds(fn) -> float:
    tic = time.perf_counter()
    fn()
    return time.perf_counter() - tic


def paired_medians(repeats: int, floor, attack) -> tuple[float, float, float]:
    """Median floor time, median attack time and median of the per-pair ratios, alternating runs."""
    pairs = [(seconds(floor), seconds(attack)) for _ in range(repeats)]
    return (statistics.median(f for f, _ in pairs), statistics.median(a for _, a in pairs),
            statistics.median(a / f for f, a in pairs))


def floor_fn(model, x, layer: str, steps: int):
    def run():
        x_adv = x.clone()
        for _ in range(steps):
            x_adv.requires_grad_(True)
            grad, = torch.autograd.grad(model.features(x_adv, [layer])[layer].sum(), x_adv)
            x_adv = (x_adv.detach() + 1e-3 * grad.sign()).clamp(0, 1)
    return run


def measure(attacks, model, x, y, repeats: int) -> list[dict]:
    """attacks: (name, metric, layers, attack object, steps); each against its floor at the same batch."""
    rows = []
    for name, metric, layers, instance, steps in attacks:
        instance(model, x, y)   # warm-up
        deepest = max(layers)   # conv1..conv5 sort by depth
        floor, cost, ratio = paired_medians(repeats, floor_fn(model, x, deepest, steps),
                                            lambda: instance(model, x, y))
        with torch.no_grad():
            once = statistics.median(seconds(lambda: instance.prepare(model, x, y)) for _ in range(repeats))
        rows.append({"attack": name, "metric": metric, "layers": layer_set_name(layers), "batch": len(y),
                     "steps": steps, "floor_seconds": floor, "attack_seconds": cost, "ratio": ratio,
                     "prepare_seconds": once, "steps_ratio": (cost - once) / floor, "meets_target": ratio <= TARGET})
        print(rows[-1])
    return rows


def trained_setting(params: dict, repeats: int):
    """The preset's AT model, bank and first evaluation batch; every attack at every layer set."""
    suite = AttackSuite.from_project(".", "at", params)
    suite.use_tuning()
    images, labels = suite.tuning_set()   # held-out images: timing needs no evaluation image
    x, y = to_float(images).to(device()), labels.to(device())
    attacks = []
    for attack, metric in (("ask", "cosine"), ("ask", "l2"), ("dknn_atk", "cosine"), ("advknn", "cosine"),
                           ("sw20", "cosine"), ("ask_apgd", "cosine")):
        for layers in layer_sets(params):
            make, grid = suite.factory(attack, layers, metric, params["eps"], {})
            instance = make(0, **suite.tuned.of(attack, layers, metric, grid, {}))
            if attack == "ask_apgd":   # one run: its floor is its steps (later runs only attack the unfooled)
                instance.restarts = 1
            attacks.append((attack, metric, layers, instance, instance.steps))
    return measure(attacks, suite.model, x, y, repeats)


def paper_model_setting(name: str, batch: int, bank_size: int, repeats: int):
    """ASK-Atk on an untrained `name` at CIFAR-10 size with a bank of `bank_size` random images: the
    cost ratio depends on the shapes, not on the weights, so this measures the paper's model without a GPU."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, in_channels=3).eval()
    images = torch.randint(0, 256, (bank_size, 3, 32, 32), dtype=torch.uint8)
    bank = FeatureBank(extract_features(model, images, ["conv3", "conv4"], 100),
                       np.arange(bank_size) % 10)
    x, y = torch.rand(batch, 3, 32, 32), torch.arange(batch) % 10
    attacks = [("ask", metric, layers, ASKAttack(bank, layers, 8 / 255, metric, tau=0.03), 20)
               for metric in ("cosine", "l2") for layers in (["conv3"], ["conv4"], ["conv3", "conv4"])]
    return measure(attacks, model, x, y, repeats)


def table(title: str, rows: list[dict], target: float) -> list[str]:
    worst = max(r["ratio"] for r in rows if r["attack"] == "ask")
    lines = [f"## {title}\n", "| attack | metric | layers | batch | steps | floor (s) | attack (s) | attack / floor | "
             "target met | once per batch (s) | steps alone / floor |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['attack']} | {r['metric']} | {r['layers']} | {r['batch']} | {r['steps']} | "
              f"{r['floor_seconds']:.3f} | {r['attack_seconds']:.3f} | {r['ratio']:.3f} | "
              f"{'yes' if r['meets_target'] else 'no'} | {r['prepare_seconds']:.3f} | {r['steps_ratio']:.3f} |"
              for r in rows]
    lines.append(f"\nWorst ASK-Atk ratio {worst:.3f} (target {target}).\n")
    return lines


def render(info: dict) -> str:
    """benchmark.md from benchmark.json's contents."""
    lines = ["# Attack cost against the compute floor\n",
             f"{info['date']}, {info['device']} ({info['cpu']}), {info['threads']} threads; ASK-APGD timed for one run "
             f"of its steps (later runs attack only the images the DkNN still classifies correctly); floor and attack "
             f"timed alternately, median of {info['repeats']} pairs (the ratio: the median of the pairs' ratios). "
             f"Floor = steps x (forward to the deepest attacked layer + backward to the input) at the same batch size. "
             f"Target: attack <= {info['target_ratio']} x floor. `once per batch`: the attack's work before its "
             f"steps (the clean forward pass, the kNN search for its references, gathering them; median of as many "
             f"runs), the part of its cost that does not scale with the steps; `steps alone / floor` leaves it out. "
             f"Peak resident memory {info['peak_rss_mib']:.0f} MiB. Malloc: {info.get('malloc', 'not recorded')}. "
             f"Written by `python benchmarks/attack_cost.py`; timings vary from run to run.\n"]
    lines += table(f"Preset `{info['preset']}`: the trained AT model (`{info['model']}`)", info["rows"],
                   info["target_ratio"])
    if info["paper_model_rows"]:
        lines += table(f"The paper's model (`{info['paper_model']}`, untrained, 32x32 inputs, "
                       f"bank of {info['paper_bank']:,} random images)", info["paper_model_rows"], info["target_ratio"])
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--paper-model", default="vgg16_bn", help="also measure ASK-Atk on this model ('' to skip)")
    parser.add_argument("--paper-batch", type=int, default=32)
    parser.add_argument("--paper-bank", type=int, default=20000, help="images in the paper model's bank")
    args = parser.parse_args()
    params = load_params()
    started = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    trained = trained_setting(params, args.repeats)
    paper = (paper_model_setting(args.paper_model, args.paper_batch, args.paper_bank, args.repeats)
             if args.paper_model else [])
    info = {"date": started, "preset": params["preset"], "model": params["model"]["name"], "device": str(device()),
            "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
            "malloc": malloc_settings(),
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "repeats": args.repeats,
            "target_ratio": TARGET, "rows": trained, "paper_model": args.paper_model, "paper_bank": args.paper_bank,
            "paper_model_rows": paper}
    write_json(REPORTS / "benchmark.json", info)
    write_text(REPORTS / "benchmark.md", render(info))


if __name__ == "__main__":
    main()
