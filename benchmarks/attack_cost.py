"""Benchmark: each attack's cost against its compute floor, on the AT model of the current preset.

floor = steps x (forward to the deepest attacked layer + backward to the input) at the same batch
size; the target is attack time <= 1.2 x floor. Timings are the best of several repeats (these
machines are noisy). Writes reports/benchmark.md and reports/benchmark.json.
Run after `dvc repro` (it needs models/at.pt and banks/at.npz):  python benchmarks/attack_cost.py
"""
from __future__ import annotations

import argparse
import platform
import resource
import time

import torch

from askknn.data import to_float
from askknn.experiments import AttackSuite, layer_sets
from askknn.io import write_json, write_text
from askknn.params import load_params
from askknn.runtime import REPORTS, device, layer_set_name

TARGET = 1.2
AUTHORS_RATIO = 6.6   # the authors' ASK-Atk on this CPU, as measured by the project (issue statement)


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        fn()
        times.append(time.perf_counter() - tic)
    return min(times)


def floor_fn(model, x, layer: str, steps: int):
    def run():
        x_adv = x.clone()
        for _ in range(steps):
            x_adv.requires_grad_(True)
            grad, = torch.autograd.grad(model.features(x_adv, [layer])[layer].sum(), x_adv)
            x_adv = (x_adv.detach() + 1e-3 * grad.sign()).clamp(0, 1)
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    params = load_params()
    suite = AttackSuite(params, "at")
    batch = params["attacks"]["batch_size"]
    x = to_float(suite.images[:batch]).to(device())
    y = suite.labels[:batch].to(device())
    steps = params["attacks"]["steps"]
    rows = []
    for attack, metric in (("ask", "cosine"), ("ask", "l2"), ("dknn_atk", "cosine"), ("advknn", "cosine")):
        for layers in layer_sets(params):
            make, grid = getattr(suite, attack)(layers, metric, params["eps"])
            instance = make(**(grid[0] if grid else {}))
            instance(suite.model, x, y)   # warm-up
            deepest = max(layers)   # conv1..conv5 sort by depth
            floor = best_of(args.repeats, floor_fn(suite.model, x, deepest, steps))
            cost = best_of(args.repeats, lambda: instance(suite.model, x, y))
            rows.append({"attack": attack, "metric": metric, "layers": layer_set_name(layers), "batch": len(y),
                         "steps": steps, "floor_seconds": floor, "attack_seconds": cost, "ratio": cost / floor,
                         "meets_target": cost / floor <= TARGET})
            print(rows[-1])
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    info = {"preset": params["preset"], "model": params["model"]["name"], "device": str(device()),
            "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
            "peak_rss_mib": peak_mib, "target_ratio": TARGET, "rows": rows}
    write_json(REPORTS / "benchmark.json", info)
    ask_ratio = max(r["ratio"] for r in rows if r["attack"] == "ask")
    lines = [f"# Attack cost against the compute floor\n",
             f"Preset `{params['preset']}` (model `{params['model']['name']}`), {info['device']}, "
             f"{info['threads']} threads, batch {batch}, {steps} steps, best of {args.repeats}. "
             f"Floor = steps x (forward to the deepest attacked layer + backward to the input). "
             f"Target: attack <= {TARGET} x floor. Peak resident memory {peak_mib:.0f} MiB.\n",
             "| attack | metric | layers | floor (s) | attack (s) | attack / floor | target met |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['attack']} | {r['metric']} | {r['layers']} | {r['floor_seconds']:.3f} | "
              f"{r['attack_seconds']:.3f} | {r['ratio']:.2f} | {'yes' if r['meets_target'] else 'no'} |" for r in rows]
    lines.append(f"\nWorst ASK-Atk ratio {ask_ratio:.2f}: against the authors' code at {AUTHORS_RATIO}x its floor "
                 f"on this CPU, that is {AUTHORS_RATIO / ask_ratio:.1f}x faster (goal: 5x).\n")
    write_text(REPORTS / "benchmark.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
