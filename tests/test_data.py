import gzip
import tarfile

import numpy as np
import pytest
from PIL import Image

from askknn.data import (IMAGES, SPLITS, TRAIN_SPLITS, PreparedData, load_dataset, make_splits, read_idx_gz,
                         save_prepared)
from askknn.shared import ParamError


def splits(seed=0, **kw):
    rng = np.random.default_rng(1)
    y_train, y_test = rng.integers(0, 4, 2000), rng.integers(0, 4, 400)
    args = dict(val_size=200, bank_size=400, eval_size=80, train_size=None, seed=seed) | kw
    return y_train, y_test, make_splits(y_train, y_test, **args)


def test_splits_are_class_balanced_disjoint_and_deterministic():
    y_train, y_test, s = splits()
    for name, labels in (("val", y_train), ("bank", y_train), ("eval", y_test)):
        assert np.bincount(labels[s[name]]).tolist() == [len(s[name]) // 4] * 4
    assert not set(s["val"]) & set(s["train"])
    assert set(s["bank"]) <= set(s["train"])
    again = splits()[2]
    assert all(np.array_equal(s[k], again[k]) for k in s)
    other = splits(seed=5)[2]
    assert not np.array_equal(s["bank"], other["bank"])


def test_every_prefix_of_the_held_out_and_evaluation_splits_is_class_balanced_on_class_ordered_data():
    """Files listed class by class (as the CIFAR-10 archive is): sorted splits would put one class
    first. Every prefix must hold each class to within one image, so the tuning set (a prefix of the
    held-out split) and the subsets (prefixes of the evaluation split) are balanced."""
    y_train, y_test = np.repeat(np.arange(10), 300), np.repeat(np.arange(10), 60)
    s = make_splits(y_train, y_test, val_size=200, bank_size=500, eval_size=400, train_size=None, seed=0)
    for name, labels in (("val", y_train), ("eval", y_test)):
        for n in range(1, len(s[name]) + 1):
            counts = np.bincount(labels[s[name][:n]], minlength=10)
            assert counts.max() - counts.min() <= 1, (name, n, counts)
    assert np.bincount(y_train[s["val"][:60]]).tolist() == [6] * 10   # a tuning set of 60
    assert sorted(s["val"]) != s["val"].tolist()                        # interleaved, not sorted


def test_a_bank_larger_than_the_training_set_is_rejected():
    with pytest.raises(ParamError, match="data.bank_size needs 300 images of class"):
        splits(bank_size=1200, train_size=400)


def test_unknown_dataset_and_missing_data_say_how_to_fix(tmp_path):
    with pytest.raises(ParamError, match="unknown; choose one of: cifar10, digits, fashion_mnist, imagenette"):
        load_dataset("mnist")
    with pytest.raises(ParamError, match="not found.*data.source: download"):
        load_dataset("cifar10", source=str(tmp_path / "nowhere"))
    with pytest.raises(ParamError, match="ubyte.gz"):
        load_dataset("fashion_mnist", source=str(tmp_path))


CLASSES = ("n01440764", "n02102040", "n02979186", "n03000684", "n03028079", "n03394916", "n03417042",
           "n03425413", "n03445777", "n03888605")   # Imagenette's ten class folders


def make_tree(root, split_names=("train", "val"), size=(160, 140), classes=CLASSES, per_class=3):
    for split in split_names:
        for c, cls in enumerate(classes):
            (root / split / cls).mkdir(parents=True)
            for i in range(per_class):
                Image.new("RGB", size, (i * 40, 20 * c, 200 - 10 * c)).save(root / split / cls / f"{i}.JPEG")


def test_imagenette_from_an_image_folder_tree_and_from_an_archive(tmp_path):
    make_tree(tmp_path / "tree")
    data = load_dataset("imagenette", source=str(tmp_path / "tree"), root=tmp_path / "raw")
    assert data.x_train.shape == (30, 3, 128, 128) and data.x_train.dtype == np.uint8
    assert data.y_train.tolist() == [c for c in range(10) for _ in range(3)] and data.x_test.shape[0] == 30
    with tarfile.open(tmp_path / "imagenette-mini.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "tree", arcname="imagenette-mini")
    packed = load_dataset("imagenette", source=str(tmp_path / "imagenette-mini.tar.gz"), root=tmp_path / "raw")
    np.testing.assert_array_equal(packed.x_train, data.x_train)


def test_an_oblong_image_is_cropped_at_its_centre_not_stretched(tmp_path):
    """A 256x128 image with a left and right quarter in other colours: at 128x128 only the middle
    half (one colour) remains, where a plain resize would keep all three bands."""
    make_tree(tmp_path / "tree", per_class=1)
    band = np.zeros((128, 256, 3), dtype=np.uint8)
    band[:, :64], band[:, 64:192], band[:, 192:] = (255, 0, 0), (0, 200, 0), (0, 0, 255)
    (tmp_path / "tree" / "train" / CLASSES[0] / "0.JPEG").unlink()
    Image.fromarray(band).save(tmp_path / "tree" / "train" / CLASSES[0] / "0.png")   # lossless
    image = load_dataset("imagenette", source=str(tmp_path / "tree"), root=tmp_path / "raw").x_train[0]
    assert (image == np.array([0, 200, 0], dtype=np.uint8)[:, None, None]).all()


def test_idx_reader_round_trips(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    header = bytes([0, 0, 8, 3]) + np.array([2, 3, 4], dtype=">u4").tobytes()
    with gzip.open(tmp_path / "x-ubyte.gz", "wb") as f:
        f.write(header + images.tobytes())
    np.testing.assert_array_equal(read_idx_gz(tmp_path / "x-ubyte.gz"), images)


def test_the_training_split_file_ignores_the_bank_and_evaluation_sizes(tmp_path, digits):
    """Training reads train_split.npz alone: other bank or evaluation sizes leave its bytes (so DVC's
    hash, so the training stages) unchanged; npz files are written with a fixed time stamp."""
    def prepared(folder, **sizes):
        sizes = {"val_size": 100, "bank_size": 500, "eval_size": 100, **sizes}
        save_prepared(folder, digits, make_splits(digits.y_train, digits.y_test, train_size=None, seed=0, **sizes))
        return (folder / TRAIN_SPLITS).read_bytes(), (folder / SPLITS).read_bytes(), (folder / IMAGES).read_bytes()

    first, again = prepared(tmp_path / "a"), prepared(tmp_path / "b")
    other = prepared(tmp_path / "c", eval_size=50, bank_size=300)
    assert first == again
    assert other[0] == first[0] and other[2] == first[2] and other[1] != first[1]
    assert set(PreparedData(tmp_path / "c", TRAIN_SPLITS).splits) == {"train", "val"}
