"""Load params.yaml plus the selected preset, and reject bad values before any work.

`params.yaml` holds the switches a user flips (`preset`, `eps`); `presets/<name>.yaml` holds a
complete configuration. A stage calls `load_params()` and gets both merged into one dict.
"""
from __future__ import annotations

from pathlib import Path

import yaml

METRICS = ("cosine", "l2")
LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5")


class ParamError(ValueError):
    """A parameter value that cannot work; the message names the parameter and the fix."""


def presets_dir(root: str | Path = ".") -> Path:
    return Path(root) / "presets"


def available_presets(root: str | Path = ".") -> list[str]:
    return sorted(p.stem for p in presets_dir(root).glob("*.yaml"))


def load_params(root: str | Path = ".") -> dict:
    root = Path(root)
    top = yaml.safe_load((root / "params.yaml").read_text()) or {}
    preset = top.get("preset")
    allowed = available_presets(root)
    if preset not in allowed:
        raise ParamError(f"preset = {preset!r} is unknown; allowed: {', '.join(allowed)} "
                         f"(files in {presets_dir(root)}/)")
    params = yaml.safe_load((presets_dir(root) / f"{preset}.yaml").read_text())
    params.update(top)
    validate(params)
    return params


def choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ParamError(f"{name} = {value!r} is not allowed; choose one of: "
                         f"{', '.join(map(str, allowed))}")


def in_range(name: str, value, low, high, integer: bool = False) -> None:
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not low <= value <= high:
        what = "an integer" if integer else "a number"
        raise ParamError(f"{name} = {value!r} must be {what} in [{low}, {high}]")


def layers_of(name: str, layers, allowed=LAYERS) -> None:
    if not layers:
        raise ParamError(f"{name} is empty; list one or more of: {', '.join(allowed)}")
    for layer in layers:
        if layer not in allowed:
            raise ParamError(f"{name} lists {layer!r}, a layer the model does not have; "
                             f"the model's layers are: {', '.join(allowed)}")


def eps_value(name: str, value) -> None:
    in_range(name, value, 0, 255, integer=True)


def validate(p: dict) -> None:
    """Check every section a stage might read; each check names the key it rejects."""
    from askknn.data import DATASETS
    from askknn.models import list_models

    eps_value("eps", p.get("eps"))
    data = p["data"]
    choice("data.dataset", data["dataset"], sorted(DATASETS))
    classes = DATASETS[data["dataset"]].num_classes
    for key in ("bank_size", "eval_size", "val_size"):
        in_range(f"data.{key}", data[key], 1, 10**7, integer=True)
    if data["bank_size"] % classes:
        raise ParamError(f"data.bank_size = {data['bank_size']} must be a multiple of the "
                         f"{classes} classes so the bank is class-balanced")
    choice("model.name", p["model"]["name"], list_models())
    train = p["train"]
    eps_value("train.eps", train["eps"])
    in_range("train.epochs", train["epochs"], 1, 10**4, integer=True)
    dknn = p["dknn"]
    layers_of("dknn.layers", dknn["layers"])
    for metric in dknn["metrics"]:
        choice("dknn.metrics", metric, METRICS)
    per_class = data["bank_size"] // classes
    in_range("dknn.k", dknn["k"], 1, 10**6, integer=True)
    if dknn["k"] > per_class:
        raise ParamError(f"dknn.k = {dknn['k']} is larger than a class's share of the bank "
                         f"({per_class} = data.bank_size / {classes}); lower dknn.k or raise "
                         f"data.bank_size")
    choice("data.source", "path" if data["source"] not in ("auto", "download") else data["source"],
           ["auto", "download", "path"])
    choice("train.augment", train["augment"], ["none", "crop_flip"])
    choice("train.attack_mode", train["attack_mode"], ["eval", "train"])
    for layers in dknn["layer_sets"]:
        layers_of("dknn.layer_sets", layers, dknn["layers"])
    check_attacks(p, per_class)
    from askknn.defenses import check_methods

    check_methods(p)


def at_most_bank_share(name: str, values, per_class: int) -> None:
    for value in values:
        in_range(name, value, 1, 10**6, integer=True)
        if value > per_class:
            raise ParamError(f"{name} has {value}, larger than a class's share of the bank ({per_class}); "
                             f"lower it or raise data.bank_size")


def positive(name: str, values) -> None:
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ParamError(f"{name} has {value!r}; every value must be a positive number")


def check_attacks(p: dict, per_class: int) -> None:
    """The attack settings and the experiment grids."""
    attacks, exp = p["attacks"], p["experiments"]
    in_range("attacks.steps", attacks["steps"], 0, 10**6, integer=True)
    in_range("attacks.step_fraction", attacks["step_fraction"], 1e-6, 1)
    ask, dknn_atk = attacks["ask"], attacks["dknn_atk"]
    at_most_bank_share("attacks.ask.k_pos", [ask["k_pos"]], per_class)
    at_most_bank_share("attacks.ask.k_neg", [ask["k_neg"]], per_class)
    for metric in METRICS:
        positive(f"attacks.ask.tau_grid.{metric}", ask["tau_grid"][metric])
    for w in ask["omega_grid"]:
        in_range("attacks.ask.omega_grid", w, 0, 1)
    if dknn_atk["guides"] != "k":
        at_most_bank_share("attacks.dknn_atk.guides", [dknn_atk["guides"]], per_class)
    for metric in METRICS:
        positive(f"attacks.dknn_atk.steepness_grid.{metric}", dknn_atk["steepness_grid"][metric])
    choice("attacks.dknn_atk.optimizer", dknn_atk["optimizer"], ["sign", "adam"])
    for key in ("eps_sweep", "pgd_eps"):
        for eps in exp[key]:
            eps_value(f"experiments.{key}", eps)
    layers_of("experiments.sweep_layers", exp["sweep_layers"], p["dknn"]["layers"])
    for key in ("k_values", "k_pos_values", "k_neg_values"):
        at_most_bank_share(f"experiments.{key}", exp[key], per_class)
    positive("experiments.tau_values", exp["tau_values"])
