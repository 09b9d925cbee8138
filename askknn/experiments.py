"""The paper's attack experiments, built from the preset: which attack, on which layers, judged
by which DkNN. Stages call `AttackSuite(params, method).run(...)` and write what it returns."""
from __future__ import annotations

import functools
import itertools

import torch

from askknn.attacks.advknn import AdvKnnAttack, KNNBlock
from askknn.attacks.ask import ASKAttack
from askknn.attacks.dknn_attack import DkNNAttack, dknn_thresholds
from askknn.bank import FeatureBank
from askknn.data import PreparedData
from askknn.dknn import DeepKNN
from askknn.evaluation import run_attack
from askknn.io import load_torch, read_json
from askknn.params import ParamError, choice
from askknn.runtime import MODELS, PREPARED, bank_path, device, layer_set_name, load_trained

ATTACKS = ("ask", "dknn_atk", "advknn")


def advknn_block_path(method: str, metric: str):
    return MODELS / f"advknn_{method}_{metric}.pt"


class AttackSuite:
    """One trained model, its bank and the evaluation images, ready to be attacked."""

    def __init__(self, params: dict, method: str = "at"):
        self.params, self.method = params, method
        self.cfg, self.k = params["attacks"], params["dknn"]["k"]
        self.data = PreparedData(PREPARED)
        self.model = load_trained(method, params, self.data)
        self.bank, extra = FeatureBank.load(bank_path(method))
        self.held_out = {k[4:]: v for k, v in extra.items() if k.startswith("val_") and k != "val_labels"}
        self.images, self.labels = self.data.split("eval")
        self.tuned: dict[tuple, dict] = {}

    def reuse_tuning(self, attack: str, metric: str, metrics_file) -> None:
        """Fix the hyper-parameters an earlier stage chose per layer set (e.g. Table 1's ASK-Atk runs)."""
        for name, cell in read_json(metrics_file)["layer_sets"].items():
            if cell["chosen"]:
                self.tuned[(attack, tuple(name.split("+")), metric)] = cell["chosen"]

    def dknn(self, layers, metric: str, k: int | None = None) -> DeepKNN:
        return DeepKNN(self.bank, layers, self.k if k is None else k, metric)

    def common(self, eps: int) -> dict:
        return {"eps": eps / 255, "steps": self.cfg["steps"], "step_size": self.cfg["step_size"] / 255}

    def ask(self, layers, metric: str, eps: int, tau=None, **options):
        """ASK-Atk factory and its tuning grid (tau, and omega for two layers); a given tau is not tuned."""
        cfg = self.cfg["ask"]
        kw = {"k_pos": cfg["k_pos"], "k_neg": cfg["k_neg"], **options}
        make = lambda **h: ASKAttack(self.bank, layers, metric=metric, **self.common(eps), **kw,
                                     **({"tau": tau} if tau is not None else {}), **h)
        taus = [{}] if tau is not None else [{"tau": t} for t in cfg["tau_grid"][metric]]
        if len(layers) == 1:
            return make, (None if tau is not None else taus)
        omegas = [{"omega": {layers[0]: w, layers[1]: 1 - w}} for w in cfg["omega_grid"]]
        return make, [{**t, **o} for t, o in itertools.product(taus, omegas)]

    def dknn_atk(self, layers, metric: str, eps: int):
        cfg = self.cfg["dknn_atk"]
        eta = dknn_thresholds(self.bank, self.held_out, layers, self.k, metric)
        common = self.common(eps)
        if cfg["optimizer"] == "adam":
            common["steps"] = cfg["adam_steps"]
        make = lambda **h: DkNNAttack(self.bank, layers, thresholds=eta, metric=metric, guides=cfg["guides"],
                                      optimizer=cfg["optimizer"], adam_lr=cfg["adam_lr"], **common, **h)
        return make, [{"steepness": a} for a in cfg["steepness_grid"][metric]]

    def advknn(self, layers, metric: str, eps: int):
        cfg = self.cfg["advknn"]
        path = advknn_block_path(self.method, metric)
        if not path.exists():
            raise ParamError(f"{path} is missing; run the advknn_block stage first (dvc repro)")
        block = KNNBlock.from_state(load_torch(path))
        lam = cfg["lam_single"] if len(layers) == 1 else cfg["lam_multi"]
        make = lambda **h: AdvKnnAttack(block, self.bank, layers, k=self.k, metric=metric, lam=lam,
                                        **self.common(eps), **h)
        return make, None

    def run(self, attack: str, layers, metric: str, eps: int, judges: dict[str, DeepKNN] | None = None,
            **options) -> dict:
        """Attack the evaluation images; judged by the DkNN on the attacked layers unless `judges` given.

        The first run of an (attack, layers, metric) tunes its hyper-parameters on the first batch;
        later runs of the same triple (other eps, K, ...) reuse that choice, as the paper fixes them.
        """
        choice("attack", attack, ATTACKS)
        if options and attack != "ask":
            raise ParamError(f"options {', '.join(sorted(options))} apply to ASK-Atk only, not to {attack}")
        make, grid = getattr(self, attack)(list(layers), metric, eps, **options)
        key = (attack, tuple(layers), metric)
        if grid and key in self.tuned:
            make, grid = functools.partial(make, **self.tuned[key]), None
        judges = judges or {layer_set_name(layers): self.dknn(layers, metric)}
        torch.manual_seed(0)
        result = run_attack(make, self.model, self.images, self.labels, judges, self.cfg["batch_size"],
                            grid if eps > 0 else None, device())
        if grid and eps > 0:
            self.tuned[key] = result["chosen"]
        elif key in self.tuned:
            result["chosen"] = self.tuned[key]
        return result


def summary(result: dict, judge: str) -> dict:
    """The numbers a table cell needs from one `run_attack` result."""
    return {"accuracy": result["dknn"][judge]["accuracy"], "clean_accuracy": result["dknn"][judge]["clean_accuracy"],
            "success_rate": result["dknn"][judge]["success_rate"], "seconds_per_image": result["seconds_per_image"],
            "chosen": result["chosen"], "tuning": result["tuning"]}


def layer_sets(params: dict) -> list[list[str]]:
    return [list(s) for s in params["dknn"]["layer_sets"]]
