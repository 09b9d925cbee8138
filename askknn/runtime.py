"""What every stage needs: device, seeding, paths and the trained models."""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from askknn.data import PreparedData
from askknn.io import UnreadableFile, load_output, load_weights, write_json
from askknn.models import create_model
from askknn.shared import ParamError

PREPARED = Path("data/prepared")
MODELS = Path("models")
BANKS = Path("banks")
METRICS_DIR = Path("metrics")
PLOTS = Path("plots")
REPORTS = Path("reports")
OUTCOMES = Path("outcomes")   # per-image outcomes of every evaluation, for the report's paired tests
RESOLVED = Path("resolved_params.yaml")   # the selected preset over presets/base.yaml, tracked by DVC


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def config_hash(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def model_name(method: str, seed: int) -> str:
    """The name of the model `method` trained with training seed `seed` (its weights, bank, metrics)."""
    return f"{method}_seed{seed}"


def model_path(method: str, seed: int, root: Path = Path(".")) -> Path:
    """The trained weights of `method` under training seed `seed` (safetensors: byte-identical for
    identical weights) in the project at `root` (every path function takes the project's root; the
    stages run in it)."""
    return root / MODELS / f"{model_name(method, seed)}.safetensors"


def advknn_block_path(method: str, metric: str, root: Path = Path(".")) -> Path:
    return root / MODELS / f"advknn_{method}_{metric}.safetensors"


def tuning_path(method: str, root: Path = Path(".")) -> Path:
    """The tuned hyper-parameters of every attack on `method` (tuned on the first training seed's model)."""
    return root / METRICS_DIR / "tuning" / f"{method}.json"


def bank_path(method: str, seed: int, root: Path = Path(".")) -> Path:
    return root / BANKS / f"{model_name(method, seed)}.npz"


def new_model(params: dict, data: PreparedData):
    return create_model(params["model"]["name"], num_classes=data.num_classes, in_channels=data.channels,
                        width=params["model"]["width"])


def load_trained(method: str, seed: int, params: dict, data: PreparedData, root: Path = Path(".")):
    """The trained model of `method` under training seed `seed`, in eval mode; a missing, unreadable
    or mismatched weights file is named in the error together with the stage that rebuilds it."""
    path = model_path(method, seed, root)
    rebuild = f"dvc repro train@{method}-{seed}"
    weights, meta = load_output(path, load_weights, rebuild)
    name = params["model"]["name"]
    if meta.get("model", name) != name:
        raise UnreadableFile(f"{path} holds a {meta['model']!r} model but model.name = {name!r}; "
                             f"rebuild it with: {rebuild}")
    model = new_model(params, data)
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise UnreadableFile(f"{path} does not fit model {name!r} ({str(exc).splitlines()[0]}); "
                             f"rebuild it with: {rebuild}") from exc
    return model.to(device()).eval()


def stage_arguments(doc: str, *names: str, choices: dict | None = None) -> list:
    """The positional arguments of a stage (e.g. the method and seed of `train@<method>-<seed>`);
    an argument named `seed` is an integer."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name in names:
        parser.add_argument(name, choices=(choices or {}).get(name), type=int if name == "seed" else str)
    args = parser.parse_args()
    return [getattr(args, name) for name in names]


def run_stage(main: Callable[[], None]) -> None:
    """A stage's entry point. A bad parameter or a missing or unreadable input ends the stage with
    its one-line message (which names the key or file and the fix) and exit status 2; with
    ASKKNN_DEBUG=1 the traceback is shown instead."""
    try:
        main()
    except (ParamError, UnreadableFile) as exc:
        if os.environ.get("ASKKNN_DEBUG"):
            raise
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def layer_set_name(layers) -> str:
    return "+".join(layers)


def split_outcomes(tree: dict, part: str) -> dict:
    """The tree of `part` (robust or clean) strings from a tree whose leaves are {robust, clean}."""
    if set(tree) == {"robust", "clean"}:
        return tree[part]
    return {key: split_outcomes(value, part) for key, value in tree.items()}


def write_evaluation(kind: str, name: str, summary: dict, outcomes: dict) -> None:
    """A stage's small metrics file (metrics/<kind>/<name>.json) and its per-image outcomes
    (outcomes/<kind>/<name>.json: the `robust` tree, read by the report's paired tests, and the
    `clean` tree of the same shape; leaves of `outcomes` are {robust, clean} packed strings)."""
    write_json(METRICS_DIR / kind / f"{name}.json", summary)
    write_json(OUTCOMES / kind / f"{name}.json", {part: split_outcomes(outcomes, part) for part in ("robust", "clean")})
