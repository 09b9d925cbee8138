"""The attack suite of one trained model: which attack (askknn.registry), on which layers, judged
by which DkNN, with which tuned hyper-parameters (`TunedChoices`, stage tune) and which random
generator (`run_seed`: every run seeds its own, so a cell does not depend on what ran before it);
the tuning (`tune_attack`), the worst-case cascade (`worst_case`) and Table 5's PGD. The evaluation
protocol they implement is written once, in README's "Evaluation protocol".
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from askknn import registry
from askknn.attacks.pgd import PGD
from askknn.bank import FeatureBank
from askknn.cuda_graphs import use_cuda_graphs
from askknn.data import PreparedData
from askknn.dknn import DeepKNN
from askknn.evaluation import best_of_grid, clean_scores, dnn_robustness, on_grid_edge, run_attack
from askknn.io import read_json
from askknn.params import load_params
from askknn.shared import ParamError
from askknn.runtime import (PREPARED, advknn_block_path, bank_path, config_hash, device, layer_set_name,
                            load_trained, tuning_path)


def run_seed(*parts) -> int:
    """A 63-bit seed that depends only on `parts` (stable across processes and machines)."""
    return int(config_hash(*parts), 16) % 2**63


def layer_sets(params: dict) -> list[list[str]]:
    return [list(s) for s in params["dknn"]["layer_sets"]]


def tuning_targets(params: dict, method: str) -> list[tuple[str, tuple, str]]:
    """The (attack, layers, metric) whose grids `method`'s evaluation needs: every attack and
    metric of Table 1 for the AT model; for the others ASK-Atk with cosine (Table 3, curves) and
    DkNN-Atk with cosine (Table 3's worst case)."""
    sets = [tuple(s) for s in layer_sets(params)]
    sweep = tuple(params["experiments"]["sweep_layers"])
    tuned = registry.names(lambda a: a.tuned)
    if method != "at":
        return [("ask", ls, "cosine") for ls in dict.fromkeys(sets + [sweep])] + [
            (a, ls, "cosine") for a in tuned if registry.ATTACKS[a].cascade is not None for ls in sets]
    targets = [(a, ls, m) for a in tuned for m in params["dknn"]["metrics"] for ls in sets]
    targets += [(a, sweep, "cosine") for a in tuned]
    return list(dict.fromkeys(targets))


def on_device(attack, cfg: dict):
    """`attack`, its steps replayed as CUDA graphs where attacks.cuda_graphs (in `cfg`, the attacks
    section) asks for it and the device is CUDA (askknn.cuda_graphs); elsewhere it runs eagerly and a
    warning, shown once per process, says so."""
    if cfg["cuda_graphs"] and device().type == "cuda":
        use_cuda_graphs(attack)
    elif cfg["cuda_graphs"]:
        warnings.warn("attacks.cuda_graphs: ignored on the CPU; every attack runs eagerly", stacklevel=2)
    return attack


class TunedChoices(dict):
    """The hyper-parameters chosen for one method, per (attack, layers tuple, metric)."""

    def __init__(self, method: str):
        super().__init__()
        self.method = method

    def read(self, path: Path) -> None:
        """The choices that stage tune@<method> wrote."""
        if not path.exists():
            raise ParamError(f"{path} is missing; run the tuning stage first (dvc repro tune@{self.method})")
        for cell in read_json(path)["cells"]:
            self[(cell["attack"], tuple(cell["layers"]), cell["metric"])] = cell["chosen"]

    def of(self, attack: str, layers, metric: str, grid: list[dict], options: dict) -> dict:
        """The chosen entry of `grid` (nothing for an attack without one); a `tau` option overrides."""
        if not grid:
            return {}
        key = (attack, tuple(layers), metric)
        if key not in self:
            raise ParamError(f"no tuned hyper-parameters for {attack} on {layer_set_name(layers)} ({metric}) "
                             f"of the {self.method} model; run the tuning stage (dvc repro tune@{self.method})")
        fixed = {k: options[k] for k in ("tau",) if k in options}
        return {**self[key], **fixed}


class AttackSuite:
    """One trained model, its bank, the held-out tuning images and the evaluation images.

    Built from objects; `AttackSuite.from_project(root, method)` loads them from a project's files
    (from any working directory)."""

    def __init__(self, params: dict, method: str, data: PreparedData, model, bank: FeatureBank,
                 held_out: dict[str, np.ndarray], held_out_labels: np.ndarray, root: Path = Path(".")):
        self.params, self.method, self.root = params, method, Path(root)
        self.cfg, self.k = params["attacks"], params["dknn"]["k"]
        self.data, self.model, self.bank = data, model, bank
        self.held_out, self.held_out_labels = held_out, held_out_labels
        self.tuned = TunedChoices(method)
        self._dknns: dict[tuple, DeepKNN] = {}
        self._clean: dict[tuple, dict] = {}

    @classmethod
    def from_project(cls, root: str | Path = ".", method: str = "at", params: dict | None = None,
                     seed: int | None = None) -> "AttackSuite":
        """The suite of `method`'s model trained with training seed `seed` (default: the first of
        params.yaml's `seeds`, the one that is tuned) in the project at `root`; then `use_tuning()`
        fixes the hyper-parameters its tuning stage chose."""
        root = Path(root)
        params = load_params(root) if params is None else params
        seed = params["seeds"][0] if seed is None else seed
        data = PreparedData(root / PREPARED)
        bank, extra = FeatureBank.load(bank_path(method, seed, root))
        held_out = {k[4:]: v for k, v in extra.items() if k.startswith("val_") and k != "val_labels"}
        return cls(params, method, data, load_trained(method, seed, params, data, root), bank, held_out,
                   extra["val_labels"], root)

    def tuning_set(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The first `attacks.tuning_size` images of the held-out split of the training data."""
        images, labels = self.data.split("val")
        n = self.cfg["tuning_size"]
        return images[:n], labels[:n]

    def evaluation_set(self, n: int | None = None, indices=None) -> tuple[torch.Tensor, torch.Tensor]:
        """The first n evaluation images (all of them by default), or the images at `indices`."""
        images, labels = self.data.split("eval")
        if indices is not None:
            return images[torch.as_tensor(indices)], labels[torch.as_tensor(indices)]
        return images[:n], labels[:n]

    def dknn(self, layers, metric: str, k: int | None = None) -> DeepKNN:
        """The DkNN judge, calibrated on the held-out split (for the credibility; it votes as the plain one)."""
        key = (tuple(layers), metric, self.k if k is None else k)
        if key not in self._dknns:
            self._dknns[key] = DeepKNN(self.bank, layers, key[2], metric).calibrate(self.held_out,
                                                                                    self.held_out_labels)
        return self._dknns[key]

    def budget(self, eps: int) -> dict:
        """eps in 1/255 -> the attack's radius, steps and step (the step rule: a fraction of eps)."""
        return {"eps": eps / 255, "steps": self.cfg["steps"], "step_size": self.cfg["step_fraction"] * eps / 255}

    def block_path(self, metric: str) -> Path:
        """AdvKnn's kNN blocks of this model for `metric` (stage advknn_block)."""
        return advknn_block_path(self.method, metric, self.root)

    def factory(self, attack: str, layers, metric: str, eps: int, options: dict):
        """The registry entry's (make, grid) for these layers, metric and budget."""
        entry = registry.attack(attack)
        unknown = sorted(set(options) - set(entry.options))
        if unknown:
            raise ParamError(f"options {', '.join(unknown)} do not apply to {entry.label}; it takes: "
                             f"{', '.join(entry.options) or 'none'}")
        make, grid = entry.builder_function()(self, list(layers), metric, eps, **options)
        return (lambda seed, **hyper: on_device(make(seed, **hyper), self.cfg)), grid

    def use_tuning(self, path=None) -> None:
        """Fix the hyper-parameters that stage tune@<method> chose for this method."""
        self.tuned.read(tuning_path(self.method, self.root) if path is None else path)

    def run(self, attack: str, layers, metric: str, eps: int, judges: dict[str, DeepKNN] | None = None,
            n: int | None = None, start: int = 0, indices=None, **options) -> dict:
        """Attack the first n evaluation images (all by default) or those at `indices`; judged by the
        DkNN on the attacked layers unless `judges` is given. `start` numbers independent random
        starts of one setting."""
        make, grid = self.factory(attack, layers, metric, eps, options)
        hyper = self.tuned.of(attack, layers, metric, grid, options)
        seed = run_seed(self.cfg["seed"], self.method, attack, list(layers), metric, eps,
                        sorted(options.items()), start)
        judges = judges or {layer_set_name(layers): self.dknn(layers, metric)}
        images, labels = self.evaluation_set(n, indices)
        selection = len(labels) if indices is None else tuple(np.asarray(indices).tolist())
        clean = self.clean(judges, images, labels, selection)
        result = run_attack(make(seed, **hyper), self.model, images, labels, judges, self.cfg["batch_size"], device(),
                            clean)
        return {**result, "hyper": hyper, "seed": seed}

    def clean(self, judges: dict[str, DeepKNN], images, labels, selection) -> dict:
        """The judges' clean scores of these images, computed once per judge and image selection."""
        missing = {name: d for name, d in judges.items() if (name, id(d), selection) not in self._clean}
        if missing:
            scores = clean_scores(self.model, images, labels, missing, self.cfg["batch_size"], device())
            self._clean.update({(name, id(d), selection): scores[name] for name, d in missing.items()})
        return {name: self._clean[(name, id(d), selection)] for name, d in judges.items()}


def tune_attack(suite: AttackSuite, attack: str, layers, metric: str, eps: int) -> dict:
    """Choose `attack`'s open hyper-parameters on the suite's tuning set (held-out training images);
    the suite keeps the choice. Returns the tuning record (every grid entry's score included)."""
    make, grid = suite.factory(attack, layers, metric, eps, {})
    seed = run_seed(suite.cfg["seed"], suite.method, attack, list(layers), metric, eps, "tuning")
    images, labels = suite.tuning_set()
    chosen, results = best_of_grid(lambda **h: make(seed, **h), grid, suite.model, images, labels,
                                   suite.dknn(layers, metric), suite.cfg["batch_size"], device())
    suite.tuned[(attack, tuple(layers), metric)] = chosen
    return {"attack": attack, "layers": list(layers), "metric": metric, "eps": eps, "chosen": chosen,
            "on_grid_edge": on_grid_edge(chosen, grid), "grid": results, "split": "val (held out of training)",
            "images": int(len(labels))}


def worst_case(suite: AttackSuite, layers, metric: str, eps: int, robust: np.ndarray, attacks=None) -> dict:
    """AutoAttack's cascade: each attack of the registry's cascade (or `attacks`) in turn on the
    images (of the first len(robust)) that every earlier attack failed on; returns the per-image
    worst case and, per attack, the images it ran on, the ones it fooled and its seconds per image."""
    robust, costs = np.asarray(robust, dtype=bool).copy(), {}
    for attack in registry.cascade() if attacks is None else attacks:
        todo = np.flatnonzero(robust)
        if len(todo) == 0:
            costs[attack] = {"images": 0, "fooled": 0, "seconds_per_image": 0.0}
            continue
        run = suite.run(attack, layers, metric, eps, indices=todo)
        still = run["outcomes"][layer_set_name(layers)]["adversarial"]
        robust[todo] = still
        costs[attack] = {"images": int(len(todo)), "fooled": int((~still).sum()),
                         "seconds_per_image": run["seconds_per_image"]}
    return {"robust": robust, "attacks": costs}


def pgd_outcomes(suite: AttackSuite, eps: int) -> dict:
    """Table 5: per evaluation image, whether the DNN is correct on it clean (`clean`) and clean and
    under PGD at eps in 1/255 (`robust`); experiments.pgd_steps steps of step_fraction x eps."""
    exp, cfg = suite.params["experiments"], suite.cfg
    attack = PGD(eps / 255, exp["pgd_steps"], cfg["step_fraction"] * eps / 255, restarts=exp["pgd_restarts"],
                 seed=run_seed(cfg["seed"], suite.method, "pgd", eps))
    return dnn_robustness(on_device(attack, cfg), suite.model, *suite.evaluation_set(), cfg["batch_size"], device())
