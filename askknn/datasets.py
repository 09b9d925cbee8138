"""The datasets and their sources, read into one form: uint8 arrays (N, C, H, W) plus int64 labels
(Prepared), with the content hash of an external source. Sources: torchvision's downloaders, Debian's
`dataset-fashion-mnist` files, a local ImageFolder tree (`<root>/train/<class>/*`, `<root>/test/<class>/*`)
or an archive of one. askknn.data draws the splits and writes the prepared form.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import sys
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from askknn.shared import ParamError

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


@dataclass(frozen=True)
class DatasetSpec:
    num_classes: int
    channels: int
    image_size: int
    train_images: int      # the standard training set's size (the splits' val, train and bank come from it)
    test_images: int       # the standard test set's size (data.eval_size comes from it)
    smallest_class: int | None   # training images of its smallest class (None: it depends on the seed)
    sources: tuple         # the data.source keywords it accepts besides a path
    how_to_get: str


DATASETS = {
    "fashion_mnist": DatasetSpec(10, 1, 28, 60000, 10000, 6000, ("auto", "download"),
                                 "apt-get install dataset-fashion-mnist, or set data.source: download "
                                 "(torchvision), or data.source: <folder with the four *-ubyte.gz files>"),
    "cifar10": DatasetSpec(10, 3, 32, 50000, 10000, 5000, ("download",),
                           "set data.source: download (torchvision), or data.source: <ImageFolder "
                           "tree with train/ and test/, or a .tar.gz/.zip of one>"),
    "imagenette": DatasetSpec(10, 3, 128, 9469, 3925, 858, ("download",),
                              "set data.source: download (torchvision's Imagenette), or data.source: "
                              "<ImageFolder tree with train/ and val/ (or test/), or an archive of one>"),
    "digits": DatasetSpec(10, 1, 8, 1437, 360, None, ("auto",), "ships with scikit-learn (pip install scikit-learn)"),
}


@dataclass
class Prepared:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source_sha256: str | None = None   # content hash of an external source (file, folder); None: download, digits


class DataError(ParamError):
    """Data that cannot be used as it is (unreadable, truncated, inconsistent); the message names the file."""


def missing(dataset: str, where) -> ParamError:
    return ParamError(f"data for {dataset!r} not found at {where}; to get it: {DATASETS[dataset].how_to_get}")


# ---------------------------------------------------------------- content hashes
READ_ERRORS = (OSError, EOFError, zlib.error, tarfile.TarError, zipfile.BadZipFile)
STAMP = ".askknn-source-sha256"    # in an unpacked folder: the hash of the archive it came from


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_files(root: Path, files) -> str:
    """One hash over (path relative to root, content hash) of each file, in sorted order."""
    digest = hashlib.sha256()
    for f in sorted(files):
        digest.update(f"{Path(f).relative_to(root).as_posix()}\t{sha256_file(f)}\n".encode())
    return digest.hexdigest()


def sha256_tree(folder: Path) -> str:
    return sha256_files(folder, [Path(d) / n for d, _, names in os.walk(folder) for n in names if n != STAMP])


# ---------------------------------------------------------------- sources
def read_idx_gz(path: Path) -> np.ndarray:
    """An IDX file of unsigned bytes (gzip-compressed); a truncated or foreign file is named in the error."""
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except READ_ERRORS as exc:
        raise DataError(f"{path} cannot be read ({type(exc).__name__}: {exc}); it is truncated or not a gzip "
                        f"file: copy or download it again") from exc
    if len(raw) < 4 or raw[:3] != b"\x00\x00\x08":
        raise DataError(f"{path} is not an IDX file of unsigned bytes (bad header)")
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4).astype(int) if len(raw) >= 4 + 4 * ndim else None
    expected = None if dims is None else 4 + 4 * ndim + int(np.prod(dims))
    if expected != len(raw):
        raise DataError(f"{path} is truncated or corrupted: its header announces shape "
                        f"{None if dims is None else dims.tolist()} but the file holds {len(raw)} bytes")
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


FASHION_FILES = ("train-images-idx3", "train-labels-idx1", "t10k-images-idx3", "t10k-labels-idx1")


def load_fashion_mnist(source: str, root: Path) -> Prepared:
    if source == "download":
        from torchvision.datasets import FashionMNIST

        tr, te = (FashionMNIST(str(root), train=t, download=True) for t in (True, False))
        return Prepared(tr.data.numpy()[:, None], tr.targets.numpy(), te.data.numpy()[:, None], te.targets.numpy())
    folder = DEBIAN_FASHION_MNIST if source == "auto" else Path(source)
    files = {k: folder / f"{k}-ubyte.gz" for k in FASHION_FILES}
    if not all(f.exists() for f in files.values()):
        raise missing("fashion_mnist", folder)
    arr = {k: read_idx_gz(f) for k, f in files.items()}
    for images, labels in (("train-images-idx3", "train-labels-idx1"), ("t10k-images-idx3", "t10k-labels-idx1")):
        if arr[images].ndim != 3 or arr[labels].ndim != 1:
            raise DataError(f"{files[images]} must hold images (N, 28, 28) and {files[labels]} labels (N,); they "
                            f"hold shapes {arr[images].shape} and {arr[labels].shape}")
        if len(arr[images]) != len(arr[labels]):
            raise DataError(f"{files[images]} holds {len(arr[images])} images but {files[labels]} holds "
                            f"{len(arr[labels])} labels; the two files must come from the same release")
        if arr[labels].size and arr[labels].max() >= DATASETS["fashion_mnist"].num_classes:
            raise DataError(f"{files[labels]} holds label {int(arr[labels].max())}; Fashion-MNIST has 10 classes")
    return Prepared(arr["train-images-idx3"][:, None], arr["train-labels-idx1"].astype(np.int64),
                    arr["t10k-images-idx3"][:, None], arr["t10k-labels-idx1"].astype(np.int64),
                    source_sha256=sha256_files(folder, files.values()))


def load_digits_dataset(seed: int) -> Prepared:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = np.round(digits.images * (255 / 16)).astype(np.uint8)[:, None]
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(y))
    test, train = order[:360], order[360:]
    return Prepared(x[train], y[train], x[test], y[test])


def extract(archive: Path, into: Path) -> None:
    if archive.suffix.lower() == ".zip" or zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            bad = z.testzip()   # reads every member: a corrupted one fails here, not half-way through
            if bad is not None:
                raise zipfile.BadZipFile(f"member {bad} is corrupted")
            z.extractall(into)
    else:
        with tarfile.open(archive) as t:
            t.extractall(into, filter="data")


def unpack_archive(archive: Path, root: Path, digest: str | None = None) -> Path:
    """Extract into `root/<archive stem>` and return the folder holding train/. The folder keeps the
    archive's hash (file .askknn-source-sha256): a different archive at the same path is unpacked again
    instead of the old folder being reused. A failed extraction leaves no folder behind."""
    digest = digest or sha256_file(archive)
    target = root / archive.name.split(".")[0]
    stamp = target / STAMP
    if target.exists() and not (stamp.is_file() and stamp.read_text().strip() == digest):
        print(f"{target} was not unpacked from the current {archive} (sha256 {digest[:12]}...); unpacking it again",
              file=sys.stderr)
        shutil.rmtree(target)
    if not target.exists():
        tmp = target.with_name(target.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            extract(archive, tmp)
            (tmp / STAMP).write_text(digest + "\n")
            tmp.rename(target)
        except READ_ERRORS as exc:
            reason = " ".join(str(exc).split())   # tarfile's reasons span several lines
            raise DataError(f"archive {archive} cannot be unpacked ({type(exc).__name__}: {reason}); it is "
                            f"truncated or corrupted: copy or download it again") from exc
        finally:
            shutil.rmtree(tmp, ignore_errors=True)   # after a failure (or an interrupt): no .partial folder
    found = [p.parent for p in target.rglob("train") if p.is_dir()]
    if not found:
        raise ParamError(f"archive {archive} holds no train/ folder; expected train/<class>/ and test/<class>/")
    return min(found, key=lambda p: len(p.parts))


def class_folders(folder: Path) -> list[str]:
    """The class names of an ImageFolder tree, as torchvision numbers them (sorted sub-folder names)."""
    return sorted(entry.name for entry in os.scandir(folder) if entry.is_dir())


def check_classes(dataset: str, train_dir: Path, test_dir: Path) -> None:
    """Labels are the indices of the sorted class names, so train and test must hold the same classes
    (else every label after a missing class shifts by one) and as many as the dataset has."""
    train, test = class_folders(train_dir), class_folders(test_dir)
    if train != test:
        lacks = [f"{d} lacks {', '.join(sorted(set(a) - set(b)))}" for d, a, b in
                 ((test_dir, train, test), (train_dir, test, train)) if set(a) - set(b)]
        raise DataError(f"the class folders of {train_dir} and {test_dir} differ: {'; '.join(lacks)}. Labels are "
                        f"numbered by sorted folder name, so both must hold the same classes")
    classes = DATASETS[dataset].num_classes
    if len(train) != classes:
        raise DataError(f"{train_dir} has {len(train)} class folders ({', '.join(train)}); {dataset} has {classes}")


def read_image_folder(folder: Path, size: int, channels: int) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image, ImageOps
    from torchvision.datasets import ImageFolder

    mode = "L" if channels == 1 else "RGB"
    try:
        tree = ImageFolder(str(folder))
    except FileNotFoundError as exc:   # a class folder without a single image
        raise DataError(f"{folder}: {exc}") from exc
    images = np.empty((len(tree.samples), channels, size, size), dtype=np.uint8)
    for i, (path, _) in enumerate(tree.samples):
        try:
            with Image.open(path) as img:
                img = img.convert(mode)
                if img.size != (size, size):   # the shorter side to `size`, then the centre: no stretching
                    img = ImageOps.fit(img, (size, size), Image.BILINEAR)
                arr = np.asarray(img, dtype=np.uint8)
        except (OSError, SyntaxError, ValueError) as exc:   # PIL: unidentified, truncated, broken
            raise DataError(f"{path} cannot be read as an image ({exc}); remove or replace it") from exc
        images[i] = arr[None] if channels == 1 else arr.transpose(2, 0, 1)
    return images, np.asarray(tree.targets, dtype=np.int64)


def load_tree(dataset: str, source: str, root: Path) -> Prepared:
    spec = DATASETS[dataset]
    path = Path(source)
    digest = None
    if path.is_file():
        digest = sha256_file(path)
        path = unpack_archive(path, root, digest)
    test_dir = next((path / d for d in ("test", "val") if (path / d).is_dir()), None)
    if not (path / "train").is_dir() or test_dir is None:
        raise missing(dataset, path)
    check_classes(dataset, path / "train", test_dir)
    x_tr, y_tr = read_image_folder(path / "train", spec.image_size, spec.channels)
    x_te, y_te = read_image_folder(test_dir, spec.image_size, spec.channels)
    return Prepared(x_tr, y_tr, x_te, y_te, source_sha256=digest or sha256_tree(path))


def load_download(dataset: str, root: Path) -> Prepared:
    import torchvision.datasets as tvd

    if dataset == "cifar10":
        tr, te = (tvd.CIFAR10(str(root), train=t, download=True) for t in (True, False))
        return Prepared(tr.data.transpose(0, 3, 1, 2), np.asarray(tr.targets),
                        te.data.transpose(0, 3, 1, 2), np.asarray(te.targets))
    for split in ("train", "val"):
        tvd.Imagenette(str(root), split=split, size="160px", download=not (root / "imagenette2-160").exists())
    data = load_tree(dataset, str(root / "imagenette2-160"), root)
    data.source_sha256 = None   # torchvision's download (checksummed by torchvision), not an external source
    return data


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
