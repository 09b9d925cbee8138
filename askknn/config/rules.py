"""The cross-field rules of a preset: split sizes against the classes and the dataset, K against a
class's share of the bank, DkNN-Atk's guides against K, layers against the bank's, the model's width,
the subsets against the splits they come from, and CUDA graphs against the learning-rate schedule.
Each rule returns its problems as sentences naming the keys and the fix; a valid preset has none."""
from __future__ import annotations

from typing import TYPE_CHECKING

from askknn.datasets import DATASETS
from askknn.models import scalable_models

if TYPE_CHECKING:
    from askknn.config.sections import Data, Preset


def cross_field_problems(p: Preset) -> list[str]:
    """Every broken cross-field rule of `p`, one sentence each, in the order of the keys they concern."""
    return (split_size_problems(p.data) + share_problems(p) + layer_and_model_problems(p) + subset_problems(p)
            + training_problems(p))


def _standard(d: Data) -> bool:
    """The standard dataset (digits, or a keyword source): its sizes are known."""
    return d.dataset == "digits" or d.source in DATASETS[d.dataset].sources


def split_size_problems(d: Data) -> list[str]:
    """The split sizes against the classes, the source keyword and the dataset's sizes."""
    spec = DATASETS[d.dataset]
    classes = spec.num_classes
    out = []
    sizes = {"train_size": d.train_size, "val_size": d.val_size, "bank_size": d.bank_size,
             "eval_size": d.eval_size}
    for key, value in sizes.items():
        if value is not None and value % classes:
            what = "so the bank is class-balanced" if key == "bank_size" else "so every class gets the same share"
            out.append(f"data.{key} = {value} must be a multiple of the {classes} classes {what} "
                       f"(e.g. {max(classes, value // classes * classes)})")
    if d.source not in spec.sources and d.source in ("auto", "download"):
        out.append(f"data.source = {d.source!r} does not work for {d.dataset}; use "
                   f"{' or '.join(spec.sources)}, or a path to the data ({spec.how_to_get})")
    if _standard(d):
        if d.eval_size > spec.test_images:
            out.append(f"data.eval_size = {d.eval_size} is larger than the {spec.test_images} images of the "
                       f"{d.dataset} test set; evaluation images come from the test set, so lower data.eval_size "
                       f"(raising data.train_size does not help)")
        used = d.val_size + (d.train_size or 0)
        if used > spec.train_images:
            out.append(f"data.val_size + data.train_size = {used} is more than the {spec.train_images} training "
                       f"images of {d.dataset}; lower them (data.train_size: null uses every image not held out)")
    return out + bank_problems(d) + class_share_problems(d)


def bank_problems(d: Data) -> list[str]:
    """The bank against the training split it is drawn from (where that split's size is known)."""
    train_split = d.train_size if d.train_size is not None else (
        DATASETS[d.dataset].train_images - d.val_size if _standard(d) else None)
    if train_split is not None and d.bank_size > train_split:
        return [f"data.bank_size = {d.bank_size} is larger than the training split ({train_split} images"
                f"{' = data.train_size' if d.train_size else ''}); the bank is drawn from it, so lower "
                f"data.bank_size or raise data.train_size"]
    return []


def class_share_problems(d: Data) -> list[str]:
    """Each class's share of the held-out split and of the training split (or, without data.train_size,
    of the bank drawn from the rest) against the smallest class of the standard training set: the
    totals can fit while the smallest class cannot give its share (Imagenette's chain saw: 858)."""
    spec = DATASETS[d.dataset]
    if not _standard(d) or spec.smallest_class is None:
        return []
    classes = spec.num_classes
    key, size = ("train_size", d.train_size) if d.train_size is not None else ("bank_size", d.bank_size)
    need = d.val_size // classes + size // classes
    if need <= spec.smallest_class:
        return []
    return [f"data.val_size / {classes} + data.{key} / {classes} = {need} images of every class, but the smallest "
            f"class of the {d.dataset} training set has {spec.smallest_class}; lower data.{key} or data.val_size"]


def share_problems(p: Preset) -> list[str]:
    """Every K (the DkNN's, the attacks', the experiments') against a class's share of the bank."""
    classes = DATASETS[p.data.dataset].num_classes
    share = p.data.bank_size // classes
    hint = f"({share} = data.bank_size / {classes}); lower it or raise data.bank_size"
    out = []

    def within_share(name, values, single):
        for v in values:
            if v > share:
                out.append(f"{name} = {v} is larger than a class's share of the bank {hint}" if single else
                           f"{name} has {v}, larger than a class's share of the bank {hint}")
                return

    within_share("dknn.k", [p.dknn.k], True)
    within_share("attacks.ask.k_pos", [p.attacks.ask.k_pos], True)
    within_share("attacks.ask.k_neg", [p.attacks.ask.k_neg], True)
    guides = p.attacks.dknn_atk.guides
    if guides != "k":
        within_share("attacks.dknn_atk.guides", [guides], True)
        if guides < p.dknn.k:   # fewer guides than K cannot outvote the true class (Sitawarin & Wagner: m >= K)
            out.append(f"attacks.dknn_atk.guides = {guides} is smaller than dknn.k = {p.dknn.k}: DkNN-Atk needs at "
                       f"least K guides; set it to k or to {p.dknn.k} or more")
    within_share("attacks.sw20.guides_grid", p.attacks.sw20.guides_grid, False)
    for key in ("k_values", "k_pos_values", "k_neg_values"):
        within_share(f"experiments.{key}", getattr(p.experiments, key), False)
    return out


def layer_and_model_problems(p: Preset) -> list[str]:
    """The layers of the DkNN configurations and the sweeps against the bank's, and the model's width."""
    out = []
    stored = p.dknn.layers
    for name, layer_lists in (("dknn.layer_sets", p.dknn.layer_sets), ("experiments.sweep_layers",
                                                                       [p.experiments.sweep_layers])):
        bad = [lay for layers in layer_lists for lay in layers if lay not in stored]
        if bad:
            out.append(f"{name} lists {bad[0]!r}, a layer the bank does not store; dknn.layers is: "
                       f"{', '.join(stored)}")
    if p.model.width != 1 and p.model.name not in scalable_models():
        out.append(f"model.width = {p.model.width} but model {p.model.name!r} has no width option; set model.width: "
                   f"1 or use one of: {', '.join(scalable_models())}")
    return out


def subset_problems(p: Preset) -> list[str]:
    """The tuning set against the held-out split, the appendix's and the worst case's images against
    the evaluation split."""
    d, out = p.data, []
    if p.attacks.tuning_size > d.val_size:
        out.append(f"attacks.tuning_size = {p.attacks.tuning_size} is larger than data.val_size = {d.val_size}; "
                   f"tuning images come from the held-out split, so lower it or raise data.val_size")
    for key, n in (("experiments.table_size", p.experiments.table_size),
                   ("experiments.subset_size", p.experiments.subset_size),
                   ("attacks.worst_case_size", p.attacks.worst_case_size)):
        if n > d.eval_size:
            out.append(f"{key} = {n} is larger than data.eval_size = {d.eval_size}; these are the first images "
                       f"of the evaluation set, so lower it or raise data.eval_size")
    return out


def training_problems(p: Preset) -> list[str]:
    """CUDA graphs against the learning-rate schedule: a graph keeps the rate it was captured with, and
    the one-cycle rate changes every batch (a capture per batch would be slower than no graph)."""
    if p.train.cuda_graphs and p.train.schedule == "onecycle":
        return ["train.cuda_graphs = true needs train.schedule: step (the one-cycle learning rate changes every "
                "batch, and a CUDA graph keeps the rate it was captured with); set train.cuda_graphs: false"]
    return []
