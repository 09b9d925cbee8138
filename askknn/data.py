"""Data sources and the prepared form.

Every dataset ends up as uint8 arrays (N, C, H, W) plus int64 labels, and a split file that
holds the training, held-out validation, feature-bank and evaluation indices, all drawn from
one seed. Training reads its own split file (train and val only): changing the bank or the
evaluation split leaves its bytes, and so the training stages, untouched. Sources: torchvision's
downloaders, Debian's `dataset-fashion-mnist` files, a local ImageFolder tree (`<root>/train/<class>/*`,
`<root>/test/<class>/*`) or an archive of one; they are read by askknn.datasets, whose public names
this module re-exports.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from askknn.datasets import (DATASETS, DEBIAN_FASHION_MNIST, FASHION_FILES, READ_ERRORS, STAMP, DataError,
                             DatasetSpec, Prepared, check_classes, class_folders, extract, load_dataset,
                             load_digits_dataset, load_download, load_fashion_mnist, load_tree, missing,
                             read_idx_gz, read_image_folder, sha256_file, sha256_files, sha256_tree, unpack_archive)
from askknn.io import load_npz, load_output, save_npz
from askknn.shared import ParamError

__all__ = [
    # askknn.datasets: the datasets and their sources
    "DEBIAN_FASHION_MNIST", "DatasetSpec", "DATASETS", "Prepared", "DataError", "missing", "READ_ERRORS", "STAMP",
    "sha256_file", "sha256_files", "sha256_tree", "read_idx_gz", "FASHION_FILES", "load_fashion_mnist",
    "load_digits_dataset", "extract", "unpack_archive", "class_folders", "check_classes", "read_image_folder",
    "load_tree", "load_download", "load_dataset",
    # the splits and the prepared form
    "balanced_sample", "class_interleaved", "make_splits", "IMAGES", "SPLITS", "TRAIN_SPLITS", "save_prepared",
    "PreparedData", "to_float",
]


# ---------------------------------------------------------------- splits
def balanced_sample(labels: np.ndarray, pool: np.ndarray, per_class: int, rng: np.random.Generator,
                    what: str) -> np.ndarray:
    """`per_class` indices of each class from `pool`, sorted; errors if a class has too few."""
    fixes = {"data.eval_size": "evaluation images come from the test set, so lower data.eval_size "
                               "(raising data.train_size does not help)",
             "data.bank_size": "the bank is drawn from the training split: lower data.bank_size or raise "
                               "data.train_size (null: every image not held out)",
             "data.train_size": "lower data.train_size (or data.val_size), or set it to null"}
    classes = np.unique(labels)
    if per_class < 1:
        raise ParamError(f"{what} gives 0 images per class; it must be at least the {len(classes)} classes")
    chosen = []
    for c in classes:
        members = pool[labels[pool] == c]
        if len(members) < per_class:
            raise ParamError(f"{what} needs {per_class} images of class {c} but only {len(members)} are "
                             f"available; {fixes.get(what, 'lower it or raise the training set size')}")
        chosen.append(rng.choice(members, per_class, replace=False))
    return np.sort(np.concatenate(chosen))


def class_interleaved(labels: np.ndarray, indices: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """`indices` reordered so that every prefix is class-balanced to within one image: each class's
    members shuffled, then dealt one per class per round, the classes in a new random order each
    round (a prefix of the first N images or of the tuning set is then a fair sample of classes)."""
    members = [rng.permutation(indices[labels[indices] == c]) for c in np.unique(labels[indices])]
    order = []
    for r in range(max(len(m) for m in members)):
        order += [members[c][r] for c in rng.permutation(len(members)) if r < len(members[c])]
    return np.asarray(order, dtype=indices.dtype)


def make_splits(y_train: np.ndarray, y_test: np.ndarray, *, val_size: int, bank_size: int,
                eval_size: int, train_size: int | None, seed: int) -> dict[str, np.ndarray]:
    """Held-out val from the training set; train = the rest (optionally a balanced subset);
    bank = a class-balanced subset of train; eval = a class-balanced subset of the test set. The
    held-out and evaluation splits are class-interleaved (their prefixes are the tuning set and
    the subsets of the appendix tables and the worst case); train and bank stay sorted."""
    classes = len(np.unique(y_train))
    rng = np.random.default_rng(seed)
    everything = np.arange(len(y_train))
    val = balanced_sample(y_train, everything, val_size // classes, rng, "data.val_size")
    rest = np.setdiff1d(everything, val)
    train = rest if train_size is None else balanced_sample(y_train, rest, train_size // classes, rng,
                                                            "data.train_size")
    bank = balanced_sample(y_train, train, bank_size // classes, rng, "data.bank_size")
    test = balanced_sample(y_test, np.arange(len(y_test)), eval_size // classes, rng, "data.eval_size")
    order = np.random.default_rng([seed, 1])   # its own stream: the splits hold the same images as before
    return {"train": train, "val": class_interleaved(y_train, val, order), "bank": bank,
            "eval": class_interleaved(y_test, test, order)}


# ---------------------------------------------------------------- prepared form
IMAGES, SPLITS, TRAIN_SPLITS = "images.npz", "splits.npz", "train_split.npz"
REBUILD = "dvc repro prepare"   # the stage that writes them


def save_prepared(folder: Path, data: Prepared, splits: dict[str, np.ndarray]) -> None:
    """The images, every split, and the training-only split file (make_splits draws train and val
    before bank and eval, so data.bank_size and data.eval_size never change it)."""
    save_npz(folder / IMAGES, x_train=data.x_train, y_train=data.y_train, x_test=data.x_test, y_test=data.y_test)
    save_npz(folder / SPLITS, **splits)
    save_npz(folder / TRAIN_SPLITS, train=splits["train"], val=splits["val"])


class PreparedData:
    """The prepared arrays plus splits, with helpers returning float tensors in [0, 1]. `splits_file`
    is SPLITS (every split) or TRAIN_SPLITS (train and val: what the training stages read)."""

    def __init__(self, folder: str | Path = "data/prepared", splits_file: str = SPLITS):
        arrays = load_output(Path(folder) / IMAGES, load_npz, REBUILD)
        self.splits = load_output(Path(folder) / splits_file, load_npz, REBUILD)
        self.x_train, self.y_train = torch.from_numpy(arrays["x_train"]), torch.from_numpy(arrays["y_train"])
        self.x_test, self.y_test = torch.from_numpy(arrays["x_test"]), torch.from_numpy(arrays["y_test"])
        self.num_classes = int(self.y_train.max()) + 1
        self.channels = self.x_train.shape[1]

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 images and labels of a split: train, val, bank (from training data) or eval (test)."""
        idx = torch.from_numpy(self.splits[name])
        if name == "eval":
            return self.x_test[idx], self.y_test[idx]
        return self.x_train[idx], self.y_train[idx]


def to_float(x: torch.Tensor) -> torch.Tensor:
    return x.float().div_(255)
