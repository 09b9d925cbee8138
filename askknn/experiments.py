"""The paper's attack experiments, built from the preset: which attack, on which layers, judged
by which DkNN, with which tuned hyper-parameters and which random generator.

The protocol (README, "Evaluation protocol"):
- every iterative attack steps `attacks.step_fraction` x eps, for `attacks.steps` steps;
- open hyper-parameters are tuned per trained model on `attacks.tuning_size` images of the
  held-out split of the training data (`AttackSuite.tune`, stage `tune@<method>`), never on the
  evaluation images, and then fixed for every run of that model;
- every run seeds its own generator from (attacks.seed, model, attack, layers, metric, eps,
  options, start), so a cell does not depend on what ran before it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from askknn.attacks.advknn import AdvKnnAttack, load_blocks
from askknn.attacks.ask import ASKAttack
from askknn.attacks.ask_apgd import ASKAPGDAttack
from askknn.attacks.dknn_attack import DkNNAttack, dknn_thresholds
from askknn.attacks.pgd import PGD
from askknn.attacks.sw20 import SW20Attack
from askknn.bank import FeatureBank
from askknn.data import PreparedData
from askknn.dknn import DeepKNN
from askknn.evaluation import clean_scores, dnn_robustness, on_grid_edge, run_attack, tune
from askknn.io import read_json
from askknn.params import load_params
from askknn.shared import ParamError, choice
from askknn.runtime import (PREPARED, advknn_block_path, bank_path, config_hash, device, layer_set_name,
                            load_trained, tuning_path)
from askknn.stats import auroc, pack, proportion

ATTACKS = ("ask", "dknn_atk", "advknn", "ask_apgd", "sw20")
CASCADE = ("dknn_atk", "sw20", "advknn")   # Table 3's worst case, after ASK-Atk and ASK-APGD
ASK_OPTIONS = ("k_pos", "k_neg", "target", "random_negatives", "tau")


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
    if method != "at":
        return [("ask", ls, "cosine") for ls in dict.fromkeys(sets + [sweep])] + [("dknn_atk", ls, "cosine")
                                                                                 for ls in sets]
    targets = [(a, ls, m) for a in ("ask", "dknn_atk") for m in params["dknn"]["metrics"] for ls in sets]
    targets += [(a, sweep, "cosine") for a in ("ask", "dknn_atk")]
    return list(dict.fromkeys(targets))


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
        self.tuned: dict[tuple, dict] = {}
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

    # ------------------------------------------------------------ images
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

    # ------------------------------------------------------------ attacks
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

    def ask(self, layers, metric: str, eps: int, **options):
        """ASK-Atk factory and its grid (tau; omega = the first layer's weight for two layers)."""
        cfg = self.cfg["ask"]
        kw = {"k_pos": cfg["k_pos"], "k_neg": cfg["k_neg"], **options}

        def make(seed, tau=None, omega=None):
            weights = None if omega is None else {layers[0]: omega, layers[1]: 1 - omega}
            return ASKAttack(self.bank, layers, metric=metric, **self.budget(eps), **kw, seed=seed,
                             **({"tau": tau} if tau is not None else {}), omega=weights)

        grid = [{"tau": t} for t in cfg["tau_grid"][metric]]
        if len(layers) == 2:
            grid = [{**g, "omega": w} for g in grid for w in cfg["omega_grid"]]
        return make, grid

    def tuned_ask(self, layers, metric: str) -> dict:
        """ASK-Atk's tuned tau and omega for these layers, as ASKAttack arguments."""
        hyper = self.hyper("ask", layers, metric, [{}], {})
        omega = hyper.get("omega")
        return {"tau": hyper["tau"], "omega": None if omega is None else {layers[0]: omega, layers[1]: 1 - omega}}

    def ask_apgd(self, layers, metric: str, eps: int):
        """ASK-APGD with ASK-Atk's tuned tau and omega (nothing more to tune: see ask_apgd.py)."""
        cfg, ask = self.cfg["ask_apgd"], self.cfg["ask"]

        def make(seed):
            return ASKAPGDAttack(self.bank, layers, eps / 255, self.k, metric=metric, k_pos=ask["k_pos"],
                                 k_neg=ask["k_neg"], steps=cfg["steps"], restarts=cfg["restarts"],
                                 restart=cfg["restart"], seed=seed, **self.tuned_ask(layers, metric))
        return make, []

    def sw20(self, layers, metric: str, eps: int):
        """SW20 with at least a majority of K guides on each side, (K + 1) // 2, the fewest the original
        uses (m // 2 of DkNN-Atk's m when that is more), and the DkNN's K (nothing to tune: see sw20.py)."""
        guides = 2 * max(self.guides() // 2, (self.k + 1) // 2)

        def make(seed):
            return SW20Attack(self.bank, layers, metric=metric, guides=guides, k=self.k,
                              reselect=self.cfg["sw20"]["reselect"], seed=seed, **self.budget(eps))
        return make, []

    def guides(self) -> int:
        """DkNN-Atk's m: the DkNN's K (as the original ties them) or a fixed number."""
        m = self.cfg["dknn_atk"]["guides"]
        return self.k if m == "k" else int(m)

    def dknn_atk(self, layers, metric: str, eps: int):
        cfg = self.cfg["dknn_atk"]
        eta = dknn_thresholds(self.bank, self.held_out, layers, self.k, metric)
        budget = self.budget(eps)
        if cfg["optimizer"] == "adam":
            budget["steps"] = cfg["adam_steps"]

        def make(seed, steepness):
            return DkNNAttack(self.bank, layers, thresholds=eta, metric=metric, guides=self.guides(),
                              steepness=steepness, optimizer=cfg["optimizer"], adam_lr=cfg["adam_lr"], seed=seed,
                              **budget)
        return make, [{"steepness": a} for a in cfg["steepness_grid"][metric]]

    def advknn(self, layers, metric: str, eps: int):
        path = advknn_block_path(self.method, metric, self.root)
        if not path.exists():
            raise ParamError(f"{path} is missing; run the advknn_block stage first (dvc repro advknn_block@{metric})")
        block = load_blocks(path)["single" if len(layers) == 1 else "multi"]

        def make(seed):
            return AdvKnnAttack(block, self.bank, layers, k=self.k, metric=metric, seed=seed, **self.budget(eps))
        return make, []

    def factory(self, attack: str, layers, metric: str, eps: int, options: dict):
        choice("attack", attack, ATTACKS)
        unknown = sorted(set(options) - set(ASK_OPTIONS))
        if unknown or (options and attack != "ask"):
            raise ParamError(f"options {', '.join(sorted(options))} apply to ASK-Atk only "
                             f"({', '.join(ASK_OPTIONS)}), not to {attack}")
        if attack == "ask":
            return self.ask(list(layers), metric, eps, **{k: v for k, v in options.items() if k != "tau"})
        return getattr(self, attack)(list(layers), metric, eps)

    # ------------------------------------------------------------ tuning
    def tune(self, attack: str, layers, metric: str, eps: int) -> dict:
        """Choose `attack`'s open hyper-parameters on the tuning set (held-out training images)."""
        make, grid = self.factory(attack, layers, metric, eps, {})
        seed = run_seed(self.cfg["seed"], self.method, attack, list(layers), metric, eps, "tuning")
        images, labels = self.tuning_set()
        chosen, results = tune(lambda **h: make(seed, **h), grid, self.model, images, labels,
                               self.dknn(layers, metric), self.cfg["batch_size"], device())
        self.tuned[(attack, tuple(layers), metric)] = chosen
        return {"attack": attack, "layers": list(layers), "metric": metric, "eps": eps, "chosen": chosen,
                "on_grid_edge": on_grid_edge(chosen, grid), "grid": results, "split": "val (held out of training)",
                "images": int(len(labels))}

    def use_tuning(self, path=None) -> None:
        """Fix the hyper-parameters that stage tune@<method> chose for this model."""
        path = tuning_path(self.method, self.root) if path is None else path
        if not path.exists():
            raise ParamError(f"{path} is missing; run the tuning stage first (dvc repro tune@{self.method})")
        for cell in read_json(path)["cells"]:
            self.tuned[(cell["attack"], tuple(cell["layers"]), cell["metric"])] = cell["chosen"]

    def hyper(self, attack: str, layers, metric: str, grid: list[dict], options: dict) -> dict:
        if not grid:
            return {}
        key = (attack, tuple(layers), metric)
        if key not in self.tuned:
            raise ParamError(f"no tuned hyper-parameters for {attack} on {layer_set_name(layers)} ({metric}) "
                             f"of the {self.method} model; run the tuning stage (dvc repro tune@{self.method})")
        fixed = {k: options[k] for k in ("tau",) if k in options}
        return {**self.tuned[key], **fixed}

    # ------------------------------------------------------------ runs
    def run(self, attack: str, layers, metric: str, eps: int, judges: dict[str, DeepKNN] | None = None,
            n: int | None = None, start: int = 0, indices=None, **options) -> dict:
        """Attack the first n evaluation images (all by default) or those at `indices`; judged by the
        DkNN on the attacked layers unless `judges` is given. `start` numbers independent random
        starts of one setting."""
        make, grid = self.factory(attack, layers, metric, eps, options)
        hyper = self.hyper(attack, layers, metric, grid, options)
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

    def worst_case(self, layers, metric: str, eps: int, robust: np.ndarray, attacks=CASCADE) -> dict:
        """AutoAttack's cascade: each attack in turn on the images (of the first len(robust)) that
        every earlier attack failed on; returns the per-image worst case and, per attack, the images
        it ran on, the ones it fooled and its seconds per image."""
        robust, costs = np.asarray(robust, dtype=bool).copy(), {}
        for attack in attacks:
            todo = np.flatnonzero(robust)
            if len(todo) == 0:
                costs[attack] = {"images": 0, "fooled": 0, "seconds_per_image": 0.0}
                continue
            run = self.run(attack, layers, metric, eps, indices=todo)
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
    return dnn_robustness(attack, suite.model, *suite.evaluation_set(), cfg["batch_size"], device())


def cell(result: dict, judge: str) -> dict:
    """The numbers a table cell needs from one `run` result: accuracy with n and 95% interval."""
    outcomes = result["outcomes"][judge]
    clean, adv = outcomes["clean"], outcomes["adversarial"]
    summary = {**proportion(adv), "clean": proportion(clean),
               "success_rate": float((~adv[clean]).mean()) if clean.any() else 0.0,
               "seconds_per_image": result["seconds_per_image"], "hyper": result["hyper"]}
    if "credibility" in outcomes:
        summary["credibility"] = credibility_detection(outcomes)
    return summary


def credibility_detection(outcomes: dict) -> dict:
    """The calibrated DkNN's credibility as a detector of successful adversarial examples: AUROC of
    the credibility of clean inputs it classifies correctly against that of the adversarial
    examples that fool it (1: perfectly detected, 0.5: invisible)."""
    cred, clean, adv = outcomes["credibility"], outcomes["clean"], outcomes["adversarial"]
    fooled = clean & ~adv
    return {**auroc(cred["clean"][clean], cred["adversarial"][fooled]),
            "mean_clean": float(cred["clean"][clean].mean()) if clean.any() else None,
            "mean_adversarial": float(cred["adversarial"][fooled].mean()) if fooled.any() else None}


def outcome(result: dict, judge: str) -> dict:
    """Per-image outcomes, packed: `robust` (1 = correct clean and under attack), for the report's
    paired tests, and `clean` (1 = correct clean), which bounds it image by image."""
    return paired(result["outcomes"][judge]["adversarial"], result["outcomes"][judge]["clean"])


def paired(robust: np.ndarray, clean: np.ndarray) -> dict:
    return {"robust": pack(robust), "clean": pack(clean)}

