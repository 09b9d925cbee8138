"""Data sources and the prepared form.

Every dataset ends up as uint8 arrays (N, C, H, W) plus int64 labels, and a split file that
holds the training, held-out validation, feature-bank and evaluation indices, all drawn from
one seed. Sources: torchvision's downloaders, Debian's `dataset-fashion-mnist` files, a local
ImageFolder tree (`<root>/train/<class>/*`, `<root>/test/<class>/*`) or an archive of one.
"""
from __future__ import annotations

import gzip
import shutil
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from askknn.io import load_npz, save_npz
from askknn.params import ParamError

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


@dataclass(frozen=True)
class DatasetSpec:
    num_classes: int
    channels: int
    image_size: int
    how_to_get: str


DATASETS = {
    "fashion_mnist": DatasetSpec(10, 1, 28, "apt-get install dataset-fashion-mnist, or set data.source: download "
                                 "(torchvision), or data.source: <folder with the four *-ubyte.gz files>"),
    "cifar10": DatasetSpec(10, 3, 32, "set data.source: download (torchvision), or data.source: <ImageFolder "
                           "tree with train/ and test/, or a .tar.gz/.zip of one>"),
    "imagenette": DatasetSpec(10, 3, 128, "set data.source: download (torchvision's Imagenette), or data.source: "
                              "<ImageFolder tree with train/ and val/ (or test/), or an archive of one>"),
    "digits": DatasetSpec(10, 1, 8, "ships with scikit-learn (pip install scikit-learn)"),
}


@dataclass
class Prepared:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def missing(dataset: str, where) -> ParamError:
    return ParamError(f"data for {dataset!r} not found at {where}; to get it: {DATASETS[dataset].how_to_get}")


# ---------------------------------------------------------------- sources
def read_idx_gz(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4).astype(int)
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_fashion_mnist(source: str, root: Path) -> Prepared:
    if source == "download":
        from torchvision.datasets import FashionMNIST

        tr, te = (FashionMNIST(str(root), train=t, download=True) for t in (True, False))
        return Prepared(tr.data.numpy()[:, None], tr.targets.numpy(), te.data.numpy()[:, None], te.targets.numpy())
    folder = DEBIAN_FASHION_MNIST if source == "auto" else Path(source)
    files = {k: folder / f"{k}-ubyte.gz" for k in
             ("train-images-idx3", "train-labels-idx1", "t10k-images-idx3", "t10k-labels-idx1")}
    if not all(f.exists() for f in files.values()):
        raise missing("fashion_mnist", folder)
    arr = {k: read_idx_gz(f) for k, f in files.items()}
    return Prepared(arr["train-images-idx3"][:, None], arr["train-labels-idx1"].astype(np.int64),
                    arr["t10k-images-idx3"][:, None], arr["t10k-labels-idx1"].astype(np.int64))


def load_digits_dataset(seed: int) -> Prepared:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = np.round(digits.images * (255 / 16)).astype(np.uint8)[:, None]
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(y))
    test, train = order[:360], order[360:]
    return Prepared(x[train], y[train], x[test], y[test])


def unpack_archive(archive: Path, root: Path) -> Path:
    """Extract once into `root/<archive stem>` and return the folder holding train/."""
    target = root / archive.name.split(".")[0]
    if not target.exists():
        tmp = target.with_name(target.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as z:
                z.extractall(tmp)
        else:
            with tarfile.open(archive) as t:
                t.extractall(tmp, filter="data")
        tmp.rename(target)
    found = [p.parent for p in target.rglob("train") if p.is_dir()]
    if not found:
        raise ParamError(f"archive {archive} holds no train/ folder; expected train/<class>/ and test/<class>/")
    return min(found, key=lambda p: len(p.parts))


def read_image_folder(folder: Path, size: int, channels: int) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image
    from torchvision.datasets import ImageFolder

    mode = "L" if channels == 1 else "RGB"
    tree = ImageFolder(str(folder))
    images = np.empty((len(tree.samples), channels, size, size), dtype=np.uint8)
    for i, (path, _) in enumerate(tree.samples):
        with Image.open(path) as img:
            img = img.convert(mode)
            if img.size != (size, size):
                img = img.resize((size, size), Image.BILINEAR)
            arr = np.asarray(img, dtype=np.uint8)
        images[i] = arr[None] if channels == 1 else arr.transpose(2, 0, 1)
    return images, np.asarray(tree.targets, dtype=np.int64)


def load_tree(dataset: str, source: str, root: Path) -> Prepared:
    spec = DATASETS[dataset]
    path = Path(source)
    if path.is_file():
        path = unpack_archive(path, root)
    test_dir = next((path / d for d in ("test", "val") if (path / d).is_dir()), None)
    if not (path / "train").is_dir() or test_dir is None:
        raise missing(dataset, path)
    x_tr, y_tr = read_image_folder(path / "train", spec.image_size, spec.channels)
    x_te, y_te = read_image_folder(test_dir, spec.image_size, spec.channels)
    return Prepared(x_tr, y_tr, x_te, y_te)


def load_download(dataset: str, root: Path) -> Prepared:
    import torchvision.datasets as tvd

    if dataset == "cifar10":
        tr, te = (tvd.CIFAR10(str(root), train=t, download=True) for t in (True, False))
        return Prepared(tr.data.transpose(0, 3, 1, 2), np.asarray(tr.targets),
                        te.data.transpose(0, 3, 1, 2), np.asarray(te.targets))
    for split in ("train", "val"):
        tvd.Imagenette(str(root), split=split, size="160px", download=not (root / "imagenette2-160").exists())
    return load_tree(dataset, str(root / "imagenette2-160"), root)


def load_dataset(dataset: str, source: str = "auto", root: str | Path = "data/raw", seed: int = 0) -> Prepared:
    if dataset not in DATASETS:
        raise ParamError(f"data.dataset = {dataset!r} is unknown; choose one of: {', '.join(sorted(DATASETS))}")
    root = Path(root)
    if dataset == "digits":
        return load_digits_dataset(seed)
    if dataset == "fashion_mnist":
        return load_fashion_mnist(source, root)
    if source == "download":
        return load_download(dataset, root)
    if source == "auto":
        raise missing(dataset, "data.source = auto")
    if not Path(source).exists():
        raise missing(dataset, source)
    return load_tree(dataset, source, root)


# ---------------------------------------------------------------- splits
def balanced_sample(labels: np.ndarray, pool: np.ndarray, per_class: int, rng: np.random.Generator,
                    what: str) -> np.ndarray:
    """`per_class` indices of each class from `pool`, sorted; errors if a class has too few."""
    chosen = []
    for c in np.unique(labels):
        members = pool[labels[pool] == c]
        if len(members) < per_class:
            raise ParamError(f"{what} needs {per_class} images of class {c} but only {len(members)} are "
                             f"available; lower it or raise the training set size")
        chosen.append(rng.choice(members, per_class, replace=False))
    return np.sort(np.concatenate(chosen))


def make_splits(y_train: np.ndarray, y_test: np.ndarray, *, val_size: int, bank_size: int,
                eval_size: int, train_size: int | None, seed: int) -> dict[str, np.ndarray]:
    """Held-out val from the training set; train = the rest (optionally a balanced subset);
    bank = a class-balanced subset of train; eval = a class-balanced subset of the test set."""
    classes = len(np.unique(y_train))
    rng = np.random.default_rng(seed)
    everything = np.arange(len(y_train))
    val = balanced_sample(y_train, everything, val_size // classes, rng, "data.val_size")
    rest = np.setdiff1d(everything, val)
    train = rest if train_size is None else balanced_sample(y_train, rest, train_size // classes, rng,
                                                            "data.train_size")
    bank = balanced_sample(y_train, train, bank_size // classes, rng, "data.bank_size")
    test = balanced_sample(y_test, np.arange(len(y_test)), eval_size // classes, rng, "data.eval_size")
    return {"train": train, "val": val, "bank": bank, "eval": test}


# ---------------------------------------------------------------- prepared form
def save_prepared(folder: Path, data: Prepared, splits: dict[str, np.ndarray]) -> None:
    save_npz(folder / "images.npz", x_train=data.x_train, y_train=data.y_train,
             x_test=data.x_test, y_test=data.y_test)
    save_npz(folder / "splits.npz", **splits)


class PreparedData:
    """The prepared arrays plus splits, with helpers returning float tensors in [0, 1]."""

    def __init__(self, folder: str | Path = "data/prepared"):
        folder = Path(folder)
        if not (folder / "images.npz").exists():
            raise ParamError(f"{folder}/images.npz is missing; run the prepare stage first (dvc repro prepare)")
        arrays = load_npz(folder / "images.npz")
        self.splits = load_npz(folder / "splits.npz")
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
