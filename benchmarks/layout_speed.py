"""Benchmark: the models' channels_last memory format against the plain NCHW one on this machine.

askknn/models.py builds every model channels_last. This measures what that buys, per model: an
attack step (forward to conv4 and backward to the input, as the attacks' floor) and a training
step (forward to the logits, cross-entropy, backward, an SGD update), each in both layouts on
the same weights, timed alternately in one process; the speed-up is the median of the per-pair
ratios. It also checks that both layouts give the same conv4 features. Writes
reports/layout_speed.md and reports/layout_speed.json.

    python benchmarks/layout_speed.py            # the default preset's model and cifar10_cpu's
"""
from __future__ import annotations

import argparse
import copy
import platform
import statistics
from datetime import datetime, timezone
from pathlib import Path

import torch
import torch.nn.functional as F

from attack_cost import malloc_settings, seconds
from askknn.io import write_json, write_text
from askknn.models import create_model
from askknn.runtime import REPORTS

# (model, width, input channels, image side, batch): the default preset's network and cifar10_cpu's
SETTINGS = [("small_cnn", 1.0, 1, 28, 128), ("vgg16_bn", 0.25, 3, 32, 128)]
LAYOUTS = {"NCHW": torch.contiguous_format, "channels_last": torch.channels_last}


def attack_step(model, x: torch.Tensor):
    def run():
        x_adv = x.clone().requires_grad_(True)
        torch.autograd.grad(model.features(x_adv, ["conv4"])["conv4"].sum(), x_adv)
    return run


def training_step(model, x: torch.Tensor, y: torch.Tensor):
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)

    def run():
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    return run


def in_layout(model, x: torch.Tensor, layout: str):
    fmt = LAYOUTS[layout]
    return copy.deepcopy(model).to(memory_format=fmt), x.contiguous(memory_format=fmt)


def paired(runs: dict, repeats: int, inner: int) -> dict:
    """Median milliseconds per call of each layout, and the median ratio NCHW / channels_last."""
    pairs = []
    for _ in range(repeats):
        pairs.append({name: seconds(lambda: [run() for _ in range(inner)]) * 1e3 / inner for name, run in runs.items()})
    return {**{f"{name}_ms": statistics.median(p[name] for p in pairs) for name in runs},
            "speedup": statistics.median(p["NCHW"] / p["channels_last"] for p in pairs)}


def measure(name: str, width: float, channels: int, side: int, batch: int, repeats: int, inner: int) -> list[dict]:
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, in_channels=channels, width=width)
    x, y = torch.rand(batch, channels, side, side), torch.arange(batch) % 10
    copies = {layout: in_layout(model, x, layout) for layout in LAYOUTS}   # layout -> (model, input)
    with torch.no_grad():
        feats = [m.eval().features(xi, ["conv4"])["conv4"] for m, xi in copies.values()]
        max_diff = (feats[0] - feats[1]).abs().max().item()
    rows = []
    for step, make in (("attack step (conv4)", lambda m, xi: attack_step(m.eval(), xi)),
                       ("training step", lambda m, xi: training_step(m.train(), xi, y))):
        runs = {layout: make(m, xi) for layout, (m, xi) in copies.items()}
        for run in runs.values():
            run()   # warm-up: oneDNN picks its kernels on the first call
        rows.append({"model": name, "width": width, "batch": batch, "step": step,
                     "max_feature_diff": max_diff, **paired(runs, repeats, inner)})
        print(rows[-1])
    return rows


def render(info: dict) -> str:
    lines = ["# Memory layout: channels_last against NCHW\n",
             f"{info['date']}, {info['cpu']}, {info['threads']} threads, torch {info['torch']}, malloc: "
             f"{info.get('malloc', 'not recorded')}. Each step timed "
             f"{info['inner']} times in a row, the two layouts alternately, {info['repeats']} pairs; milliseconds per "
             f"step are medians, the speed-up the median of the pairs' ratios (NCHW / channels_last). The same "
             f"weights in both layouts; `max |diff|` compares their conv4 features. Written by "
             f"`python benchmarks/layout_speed.py`; timings vary from run to run.\n",
             "| model | width | batch | step | NCHW (ms) | channels_last (ms) | speed-up | max abs diff |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['width']} | {r['batch']} | {r['step']} | {r['NCHW_ms']:.1f} | "
              f"{r['channels_last_ms']:.1f} | {r['speedup']:.2f}x | {r['max_feature_diff']:.1e} |"
              for r in info["rows"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--inner", type=int, default=5, help="steps per timing")
    parser.add_argument("--batch", type=int, help="one batch size for every model instead of the settings' own")
    parser.add_argument("--out", type=Path, default=REPORTS)
    args = parser.parse_args(argv)
    started = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    rows = [row for *setting, batch in SETTINGS
            for row in measure(*setting, args.batch or batch, args.repeats, args.inner)]
    info = {"date": started, "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
            "malloc": malloc_settings(),
            "torch": torch.__version__, "repeats": args.repeats, "inner": args.inner, "rows": rows}
    write_json(args.out / "layout_speed.json", info)
    write_text(args.out / "layout_speed.md", render(info))


if __name__ == "__main__":
    main()
