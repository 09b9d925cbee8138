"""Benchmark: each attack's cost against its compute floor, on the AT model of the current preset.

floor = steps x (forward to the deepest attacked layer + backward to the input) at the same batch
size; the target is attack time <= 1.2 x floor. The floor and the attack are timed alternately in
one process and each reported as the median of the repeats (at least 5): on these noisy machines the
floor of identical work varied from 0.80 to 1.30 s between rows when each was timed on its own. Writes reports/benchmark.md and reports/benchmark.json.
Run after `dvc repro` (it needs models/at.pt and banks/at.npz):  python benchmarks/attack_cost.py
"""
from __future__ import annotations

import argparse
import platform
import resource
import statistics
import time

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

TARGET = 1.2
AUTHORS_RATIO = 6.6   # the authors' ASK-Atk on this CPU, as measured by the project (issue statement)


def seconds(fn) -> float:
    tic = time.perf_counter()
    fn()
    return time.perf_counter() - tic


def alternately(repeats: int, floor, attack) -> tuple[float, float]:
    """Medians of `floor` and `attack` timed in turn, so a drift of the machine hits both alike."""
    pairs = [(seconds(floor), seconds(attack)) for _ in range(max(repeats, 5))]
    return statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)


def floor_fn(model, x, layer: str, steps: int):
    def run():
        x_adv = x.clone()
        for _ in range(steps):
            x_adv.requires_grad_(True)
            grad, = torch.autograd.grad(model.features(x_adv, [layer])[layer].sum(), x_adv)
            x_adv = (x_adv.detach() + 1e-3 * grad.sign()).clamp(0, 1)
    return run


def measure(attacks, model, x, y, steps: int, repeats: int) -> list[dict]:
    """attacks: (name, metric, layers, attack object); each against its floor at the same batch."""
    rows = []
    for name, metric, layers, instance in attacks:
        instance(model, x, y)   # warm-up
        deepest = max(layers)   # conv1..conv5 sort by depth
        floor, cost = alternately(repeats, floor_fn(model, x, deepest, steps), lambda: instance(model, x, y))
        rows.append({"attack": name, "metric": metric, "layers": layer_set_name(layers), "batch": len(y),
                     "steps": steps, "floor_seconds": floor, "attack_seconds": cost, "ratio": cost / floor,
                     "meets_target": cost / floor <= TARGET})
        print(rows[-1])
    return rows


def trained_setting(params: dict, repeats: int):
    """The preset's AT model, bank and first evaluation batch; every attack at every layer set."""
    suite = AttackSuite(params, "at")
    batch = params["attacks"]["batch_size"]
    x, y = to_float(suite.images[:batch]).to(device()), suite.labels[:batch].to(device())
    attacks = []
    for attack, metric in (("ask", "cosine"), ("ask", "l2"), ("dknn_atk", "cosine"), ("advknn", "cosine")):
        for layers in layer_sets(params):
            make, grid = getattr(suite, attack)(layers, metric, params["eps"])
            attacks.append((attack, metric, layers, make(**(grid[0] if grid else {}))))
    return measure(attacks, suite.model, x, y, params["attacks"]["steps"], repeats)


def paper_model_setting(name: str, batch: int, repeats: int):
    """ASK-Atk on an untrained `name` at CIFAR-10 size with a random 1,000-image bank: the cost ratio
    depends on the shapes, not on the weights, so this measures the paper's model without a GPU."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, in_channels=3).eval()
    images = torch.randint(0, 256, (1000, 3, 32, 32), dtype=torch.uint8)
    bank = FeatureBank(extract_features(model, images, ["conv3", "conv4"], 100), np.repeat(np.arange(10), 100))
    x, y = torch.rand(batch, 3, 32, 32), torch.arange(batch) % 10
    attacks = [("ask", metric, layers, ASKAttack(bank, layers, 8 / 255, metric, tau=0.03))
               for metric in ("cosine", "l2") for layers in (["conv3"], ["conv4"], ["conv3", "conv4"])]
    return measure(attacks, model, x, y, 20, repeats)


def table(title: str, rows: list[dict]) -> list[str]:
    worst = max(r["ratio"] for r in rows if r["attack"] == "ask")
    lines = [f"## {title}\n", "| attack | metric | layers | batch | floor (s) | attack (s) | attack / floor | target met |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['attack']} | {r['metric']} | {r['layers']} | {r['batch']} | {r['floor_seconds']:.3f} | "
              f"{r['attack_seconds']:.3f} | {r['ratio']:.2f} | {'yes' if r['meets_target'] else 'no'} |" for r in rows]
    lines.append(f"\nWorst ASK-Atk ratio {worst:.2f}; the authors' code runs at {AUTHORS_RATIO}x its floor on this "
                 f"CPU, so this is {AUTHORS_RATIO / worst:.1f}x faster (goal: 5x).\n")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="timed pairs (at least 5)")
    parser.add_argument("--paper-model", default="vgg16_bn", help="also measure ASK-Atk on this model ('' to skip)")
    parser.add_argument("--paper-batch", type=int, default=32)
    args = parser.parse_args()
    params = load_params()
    trained = trained_setting(params, args.repeats)
    paper = paper_model_setting(args.paper_model, args.paper_batch, args.repeats) if args.paper_model else []
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    info = {"preset": params["preset"], "model": params["model"]["name"], "device": str(device()),
            "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
            "peak_rss_mib": peak_mib, "target_ratio": TARGET, "rows": trained,
            "paper_model": args.paper_model, "paper_model_rows": paper}
    write_json(REPORTS / "benchmark.json", info)
    lines = ["# Attack cost against the compute floor\n",
             f"{info['device']}, {info['threads']} threads, 20 steps, median of {max(args.repeats, 5)} alternating runs. Floor = steps x "
             f"(forward to the deepest attacked layer + backward to the input) at the same batch size. "
             f"Target: attack <= {TARGET} x floor. Peak resident memory {peak_mib:.0f} MiB. "
             f"Written by `python benchmarks/attack_cost.py`; timings vary from run to run.\n"]
    lines += table(f"Preset `{params['preset']}`: the trained AT model (`{params['model']['name']}`)", trained)
    if paper:
        lines += table(f"The paper's model (`{args.paper_model}`, untrained, 32x32 inputs, random 1,000-image bank)",
                       paper)
    write_text(REPORTS / "benchmark.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
