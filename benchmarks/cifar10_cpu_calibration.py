"""Calibration of the `cifar10_cpu` preset (not a test): which training set, epochs and PGD steps give
the AT model the best held-out accuracy for the CPU time the preset can spend on training?

Two steps, because the CPU cost must be measured on the CPU that runs the preset and the sweep is
only affordable on a GPU:

    python benchmarks/cifar10_cpu_calibration.py cpu-cost     # here: ms per image of each pass
    python benchmarks/cifar10_cpu_calibration.py sweep --source data/raw/cifar10-jpeg.tar.gz

`sweep` trains AT (the preset's model, budget, schedule shape and augmentation, in fp32 as on the
CPU) for every variant below and scores it on the held-out split (`data.val_size` training images
the variants never train on), never on the evaluated test images. Its CPU time is estimated from the
passes it makes and the per-pass costs of `cpu-cost`. Every call of `sweep` is kept in
reports/cifar10_cpu/calibration.json (device, per-pass costs, one row per variant, saved after every
variant, so a call cut off keeps its rows); reports/cifar10_cpu/calibration.md is rendered from all of
them.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from askknn.data import TRAIN_SPLITS, PreparedData, load_dataset, make_splits, save_prepared
from askknn.io import write_json, write_text
from askknn.models import create_model
from askknn.params import preset_config
from askknn.report.common import rate_with_ci
from askknn.schema import Preset, check
from askknn.training import TrainConfig, train_model

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "reports" / "cifar10_cpu"
RUNS = OUT / "calibration.json"
COSTS = OUT / "cpu_pass_ms.json"
# Each variant overrides the preset's training. First PGD steps against images and epochs at a similar
# cost, a narrower network with more data; then, around the best of those (one FGSM step with a random
# start), the optimiser's batch size and learning rate.
VARIANTS = [dict(train_images=10_000, epochs=10, pgd_steps=3, pgd_step_size=2.0),
            dict(train_images=20_000, epochs=5, pgd_steps=3, pgd_step_size=2.0),
            dict(train_images=10_000, epochs=15, pgd_steps=2, pgd_step_size=2.5),
            dict(train_images=15_000, epochs=10, pgd_steps=2, pgd_step_size=2.5),
            dict(train_images=20_000, epochs=10, pgd_steps=1, pgd_step_size=5.0),
            dict(train_images=20_000, epochs=10, pgd_steps=3, pgd_step_size=2.0, width=0.125),
            dict(train_images=20_000, epochs=10, pgd_steps=3, pgd_step_size=2.0),
            dict(train_images=10_000, epochs=20, pgd_steps=2, pgd_step_size=2.5),
            dict(train_images=20_000, epochs=10, pgd_steps=1, pgd_step_size=5.0, batch_size=64),
            dict(train_images=20_000, epochs=10, pgd_steps=1, pgd_step_size=5.0, batch_size=32),
            dict(train_images=20_000, epochs=10, pgd_steps=1, pgd_step_size=5.0, batch_size=64, lr=0.1),
            dict(train_images=10_000, epochs=20, pgd_steps=1, pgd_step_size=5.0, batch_size=64),
            dict(train_images=20_000, epochs=10, pgd_steps=2, pgd_step_size=2.5, batch_size=64),
            dict(train_images=40_000, epochs=5, pgd_steps=1, pgd_step_size=5.0, batch_size=64),
            dict(train_images=40_000, epochs=10, pgd_steps=1, pgd_step_size=5.0, batch_size=64, width=0.125)]


def preset() -> dict:
    return check(Preset, preset_config("cifar10_cpu", ROOT), "presets/cifar10_cpu.yaml").model_dump()


def ms_per_image(fn, batch: int, repeats: int = 5) -> float:
    fn()
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        fn()
        times.append(time.perf_counter() - tic)
    return 1000 * min(times) / batch


def cpu_cost(widths: list[float], batch: int) -> dict:
    """ms per image of a training pass (forward + backward to the weights) and an attack pass
    (forward + backward to the input, weights frozen), per width, on this machine's CPU."""
    out = {"machine": f"{platform.machine()}, {torch.get_num_threads()} threads", "batch": batch}
    for width in widths:
        model = create_model("vgg16_bn", width=width)
        x = torch.rand(batch, 3, 32, 32)

        def train_pass():
            model(x).sum().backward()

        def attack_pass():
            xi = x.clone().requires_grad_(True)
            torch.autograd.grad(model(xi).sum(), xi)

        train = ms_per_image(train_pass, batch)
        model.eval().requires_grad_(False)
        out[str(width)] = {"train": train, "attack": ms_per_image(attack_pass, batch)}
    return out


def estimated_cpu_seconds(costs: dict, cfg: TrainConfig, images: int, val: int, width: float) -> float:
    ms = costs[str(width)]
    per_epoch = images * (cfg.pgd_steps * ms["attack"] + ms["train"]) + val * (cfg.val_pgd_steps + 1) * ms["attack"]
    return cfg.epochs * per_epoch / 1000


def sweep(source: str, root: str, costs: dict):
    """Yields the rows so far after every variant."""
    p = preset()
    dataset = load_dataset("cifar10", source, root, p["data"]["seed"])
    rows = []
    for variant in VARIANTS:
        variant = {"width": p["model"]["width"], "batch_size": p["train"]["batch_size"], "lr": p["train"]["lr"],
                   **variant}
        images, width = variant["train_images"], variant["width"]
        # The preset's learning-rate drop sits at the same fraction of every schedule.
        drop = max(1, round(variant["epochs"] * p["train"]["milestones"][0] / p["train"]["epochs"]))
        cfg = dataclasses.replace(TrainConfig.from_params({**p["train"], **variant}), milestones=[drop],
                                  precision="fp32")
        splits = make_splits(dataset.y_train, dataset.y_test, val_size=p["data"]["val_size"],
                             bank_size=p["data"]["bank_size"], eval_size=p["data"]["eval_size"],
                             train_size=images, seed=p["data"]["seed"])
        with tempfile.TemporaryDirectory() as tmp:
            save_prepared(Path(tmp), dataset, splits)
            torch.manual_seed(cfg.seed)
            tic = time.perf_counter()
            history = train_model(create_model("vgg16_bn", width=width), PreparedData(tmp, TRAIN_SPLITS), cfg,
                                  Path(tmp) / "checkpoint.pt", device="cuda" if torch.cuda.is_available() else "cpu",
                                  log=lambda _: None)
        rows.append({**variant, "n": len(splits["val"]), "val_clean": history[-1]["val_clean_accuracy"],
                     "val_pgd": history[-1]["val_pgd_accuracy"], "seconds_here": time.perf_counter() - tic,
                     "cpu_seconds": estimated_cpu_seconds(costs, cfg, images, len(splits["val"]), width)})
        print(rows[-1], flush=True)
        yield rows


def protocol() -> dict:
    """The preset's training settings that every variant keeps (recorded with each call)."""
    train = preset()["train"]
    return {"eps": train["eps"], "gamma": train["gamma"], "drop_fraction": train["milestones"][0] / train["epochs"],
            "val_pgd_steps": train["val_pgd_steps"]}


def call_section(number: int, call: dict) -> str:
    costs, kept = call["costs"], call["protocol"]
    lines = [
        f"## Call {number}: {call['device']}, {call['date']}\n",
        f"AT at {kept['eps']}/255, the learning rate dropped x{kept['gamma']} at {kept['drop_fraction']:.0%} of the "
        f"epochs; accuracy under PGD-{kept['val_pgd_steps']} at {kept['eps']}/255. CPU seconds are estimated for one "
        f"AT run from the passes it makes and the per-image cost of each pass "
        f"measured on this project's CPU ({costs['machine']}, batch {costs['batch']}): "
        + "; ".join(f"width {w}: training pass {c['train']:.2f} ms, attack pass {c['attack']:.2f} ms"
                    for w, c in costs.items() if isinstance(c, dict)) + ".\n",
        "| training images | epochs | PGD steps (step /255) | batch | lr | width | held-out clean | held-out PGD | "
        "est. CPU min (AT) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in call["rows"]:
        lines.append(f"| {r['train_images']:,} | {r['epochs']} | {r['pgd_steps']} ({r['pgd_step_size']:g}) | "
                     f"{r['batch_size']} | {r['lr']:g} | {r['width']} | {rate_with_ci(r['val_clean'], r['n'])} | "
                     f"{rate_with_ci(r['val_pgd'], r['n'])} | {r['cpu_seconds'] / 60:.1f} |")
    return "\n".join(lines) + "\n"


def markdown(calls: list[dict]) -> str:
    n = {r["n"] for call in calls for r in call["rows"]}
    return "\n".join([
        "# Calibration of the `cifar10_cpu` preset\n",
        "AT (VGG16-BN at the width given, crop and flip, fp32) on class-balanced subsets of CIFAR-10's training images "
        "(the JPEG re-encoding), scored on the "
        f"held-out training images that no variant trains on (n = {', '.join(map(str, sorted(n)))}); the evaluated "
        f"test images play no part. Accuracies in percent with 95% Wilson intervals. One seed per variant. The preset "
        f"takes the "
        f"variant with the best held-out accuracy per CPU minute, for as many epochs as its 2-hour budget allows.\n",
        f"Written by `python benchmarks/cifar10_cpu_calibration.py sweep` from `{RUNS.name}`, one section per call "
        f"(a call that ran out of device time keeps the variants it finished).\n",
        *(call_section(i + 1, call) for i, call in enumerate(calls))])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    cost = sub.add_parser("cpu-cost", help=f"measure the per-pass CPU cost; writes {COSTS.relative_to(ROOT)}")
    cost.add_argument("--batch", type=int, default=128)
    run = sub.add_parser("sweep", help="train every variant; adds a call to calibration.json, renders calibration.md")
    run.add_argument("--source", required=True, help="CIFAR-10 archive, folder tree, or 'download'")
    run.add_argument("--root", default="data/raw", help="where the archive is unpacked")
    args = parser.parse_args()
    if args.command == "cpu-cost":
        write_json(COSTS, cpu_cost(sorted({v.get("width", preset()["model"]["width"]) for v in VARIANTS}), args.batch))
        print(COSTS.read_text())
        return 0
    if not COSTS.exists():
        parser.error(f"{COSTS.relative_to(ROOT)} is missing: run `cpu-cost` on the CPU that runs the preset first")
    costs = json.loads(COSTS.read_text())
    calls = json.loads(RUNS.read_text())["calls"] if RUNS.exists() else []
    call = {"device": torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({platform.machine()})",
            "date": datetime.date.today().isoformat(), "costs": costs, "protocol": protocol(), "rows": []}
    for rows in sweep(args.source, args.root, costs):   # saved after every variant
        write_json(RUNS, {"calls": [*calls, {**call, "rows": rows}]})
        write_text(OUT / "calibration.md", markdown(json.loads(RUNS.read_text())["calls"]))
    print((OUT / "calibration.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
