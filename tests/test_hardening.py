"""Bad inputs and faults, one test each: each gives an error that names the problem (or works), and
leaves no partial output behind. Small synthetic inputs only."""
import copy
import fnmatch
import gzip
import runpy
import shutil
import signal
import subprocess
import os
import sys
import tarfile
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from askknn.bank import FeatureBank
from askknn.data import (IMAGES, SPLITS, DataError, PreparedData, load_dataset, load_digits_dataset, make_splits,
                         save_prepared)
from askknn.defenses import AskDefTerm
from askknn.distributed import check_gpus, relaunch, setup
from askknn.io import UnreadableFile, atomic_path, load_weights, save_torch, save_weights, stale_temporaries
from askknn.models import create_model
from askknn.params import load_params, preset_config
from askknn.shared import ParamError
from askknn.runtime import load_trained, model_path
from askknn.training import TrainConfig, load_checkpoint, train_model

ROOT = Path(__file__).resolve().parents[1]
CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


# ---------------------------------------------------------------- helpers
@pytest.fixture
def project(tmp_path):
    """A copy of params.yaml and the presets, switched to the tiny preset, whose whole configuration
    is written into presets/base.yaml (so that a key removed from it is missing everywhere)."""
    shutil.copytree(ROOT / "presets", tmp_path / "presets")
    (tmp_path / "params.yaml").write_text("preset: tiny\neps: 8\nseeds: [0]\n")
    (tmp_path / "presets" / "base.yaml").write_text(yaml.safe_dump(preset_config("tiny", ROOT)))
    (tmp_path / "presets" / "tiny.yaml").write_text("# every value is base.yaml's\n")
    return tmp_path


def edit_preset(project, change):
    path = project / "presets" / "base.yaml"
    preset = yaml.safe_load(path.read_text())
    change(preset)
    path.write_text(yaml.safe_dump(preset))


def rejects(project, change, *messages):
    edit_preset(project, change)
    with pytest.raises(ParamError) as err:
        load_params(project)
    for message in messages:
        assert message in str(err.value), str(err.value)
    return str(err.value)


def image_tree(root: Path, splits=("train", "test"), classes=CIFAR_CLASSES, size=32, colour=0):
    for split in splits:
        for c, name in enumerate(classes):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(2):
                Image.new("RGB", (size, size), (colour, 20 * c, 10 * i)).save(root / split / name / f"{i}.png")
    return root


def tar_gz(folder: Path, archive: Path) -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return archive


def idx_gz(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 8, array.ndim]) + np.array(array.shape, dtype=">u4").tobytes()
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def fashion_folder(folder: Path, train_labels=60) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    idx_gz(folder / "train-images-idx3-ubyte.gz", rng.integers(0, 255, (60, 28, 28)))
    idx_gz(folder / "train-labels-idx1-ubyte.gz", np.arange(train_labels) % 10)
    idx_gz(folder / "t10k-images-idx3-ubyte.gz", rng.integers(0, 255, (20, 28, 28)))
    idx_gz(folder / "t10k-labels-idx1-ubyte.gz", np.arange(20) % 10)
    return folder


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])


def leftovers(folder: Path) -> list[str]:
    """Partial extractions and temporaries of atomic writes under `folder`."""
    return [p.name for p in folder.rglob("*") if p.name.endswith(".partial") or p.name.startswith(".tmp-")]


# ---------------------------------------------------------------- data
def test_a_tree_whose_test_split_lacks_a_class_is_rejected_naming_the_class(tmp_path):
    tree = image_tree(tmp_path / "cifar")
    shutil.rmtree(tree / "test" / "horse")
    with pytest.raises(DataError, match=r"test lacks horse.*same classes"):
        load_dataset("cifar10", source=str(tree), root=tmp_path / "raw")
    shutil.rmtree(tree / "test")                      # the same, packed: nothing unpacked is reused wrongly
    image_tree(tree, splits=("test",), classes=[c for c in CIFAR_CLASSES if c != "cat"])
    with pytest.raises(DataError, match="lacks cat"):
        load_dataset("cifar10", source=str(tar_gz(tree, tmp_path / "cifar.tar.gz")), root=tmp_path / "raw")
    assert not leftovers(tmp_path)


def test_idx_files_with_different_image_and_label_counts_are_rejected_naming_both(tmp_path):
    folder = fashion_folder(tmp_path / "fmnist", train_labels=10)
    with pytest.raises(DataError) as err:
        load_dataset("fashion_mnist", source=str(folder))
    message = str(err.value)
    assert "train-images-idx3-ubyte.gz holds 60 images" in message
    assert "train-labels-idx1-ubyte.gz holds 10 labels" in message


@pytest.mark.parametrize("change, messages", [
    (lambda p: p["train"].update(epoch=p["train"].pop("epochs")),
     ["train.epoch is not a known parameter; did you mean train.epochs?"]),
    (lambda p: p["train"].update(learning_rate=p["train"].pop("lr")),
     ["train.learning_rate is not a known parameter; did you mean train.lr?"]),
    (lambda p: p["dknn"].update(K=p["dknn"].pop("k")), ["dknn.K is not a known parameter; did you mean dknn.k?"]),
    (lambda p: p["attacks"].update(step_size=2.0), ["attacks.step_size was replaced by attacks.step_fraction"]),
])
def test_a_typo_in_a_preset_key_is_rejected_with_the_nearest_name(project, change, messages):
    rejects(project, change, "presets/tiny.yaml", *messages)


def test_a_typo_in_a_switch_is_rejected_with_the_nearest_name(project):
    (project / "params.yaml").write_text("preset: tiny\nesp: 8\n")
    with pytest.raises(ParamError, match="params.yaml: esp is not a known parameter; did you mean eps?"):
        load_params(project)
    (project / "params.yaml").write_text("preset: tiny\neps: 8\ntrain:\n  epochs: 3\n")   # -S train.epochs=3
    with pytest.raises(ParamError, match="train is a preset section, not a switch"):
        load_params(project)


@pytest.mark.parametrize("section, key", [("train", "lr"), ("train", "pgd_steps")])
def test_a_missing_key_is_named_instead_of_defaulted(project, section, key):
    rejects(project, lambda p: p[section].pop(key), f"{section}.{key} is missing from section {section}")


@pytest.mark.parametrize("section, key", [("dknn", "k"), ("train", "epochs"), ("data", "seed")])
def test_a_missing_key_is_named_instead_of_a_bare_key_error(project, section, key):
    rejects(project, lambda p: p[section].pop(key), f"{section}.{key} is missing")


@pytest.mark.parametrize("path, value, message", [
    ("train.lr", "abc", "train.lr = 'abc' must be a number"),
    ("train.lr", "1e-3", "YAML reads 1e-3 as text"),
    ("train.batch_size", 0, "train.batch_size = 0 must be an integer in [1,"),
    ("train.milestones", "abc", "train.milestones = 'abc' must be a list"),
    ("data.train_size", -100, "data.train_size = -100 must be null"),
    ("attacks.advknn.epochs", 0, "attacks.advknn.epochs = 0 must be an integer in [1,"),
    ("train.nesterov", "yes", "train.nesterov = 'yes' must be true or false"),
    ("attacks.dknn_atk.guides", "m", "attacks.dknn_atk.guides = 'm' must be the string k"),
])
def test_a_value_of_the_wrong_type_or_range_names_the_key(project, path, value, message):
    *parents, last = path.split(".")

    def change(p):
        for key in parents:
            p = p[key]
        p[last] = value
    rejects(project, change, message)


@pytest.mark.parametrize("key", ["eval_size", "val_size"])
def test_a_split_smaller_than_the_classes_is_rejected_before_an_empty_split_is_written(project, key, tmp_path):
    rejects(project, lambda p: p["data"].update({key: 5}), f"data.{key} = 5 must be a multiple of the 10 classes")
    y = np.arange(200) % 10
    with pytest.raises(ParamError, match=f"data.{key} gives 0 images per class"):
        make_splits(y, y, **{"val_size": 50, "bank_size": 50, "eval_size": 50, key: 5}, train_size=None, seed=0)


def test_an_evaluation_set_larger_than_the_test_set_points_at_the_test_set(project):
    message = rejects(project, lambda p: p["data"].update(eval_size=1000),
                      "data.eval_size = 1000 is larger than the 360 images of the digits test set",
                      "evaluation images come from the test set")
    assert "raise the training set size" not in message
    y_train, y_test = np.arange(500) % 10, np.arange(100) % 10          # prepare's own check, for a path source
    with pytest.raises(ParamError, match="evaluation images come from the test set"):
        make_splits(y_train, y_test, val_size=50, bank_size=50, eval_size=200, train_size=None, seed=0)


# ---------------------------------------------------------------- checkpoints and models
@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    digits = load_digits_dataset(seed=0)
    folder = tmp_path_factory.mktemp("prepared")
    save_prepared(folder, digits, make_splits(digits.y_train, digits.y_test, val_size=50, bank_size=100,
                                              eval_size=50, train_size=200, seed=0))
    return PreparedData(folder)


def train_once(prepared, checkpoint):
    torch.manual_seed(0)
    model = create_model("small_cnn", in_channels=1)
    cfg = TrainConfig(epochs=1, batch_size=100, lr=0.05, eps=16, pgd_steps=1, pgd_step_size=8, val_pgd_steps=1)
    train_model(model, prepared, cfg, checkpoint, log=lambda _: None)
    return model.state_dict()


def test_a_missing_or_unreadable_prepared_file_names_it_and_the_prepare_stage(prepared, tmp_path):
    folder = tmp_path / "prepared"
    folder.mkdir()
    np.savez(folder / IMAGES, x_train=prepared.x_train.numpy())
    with pytest.raises(ParamError, match=rf"prepared/{SPLITS} is missing; run the stage that writes it first "
                                         r"\(dvc repro prepare\)$"):
        PreparedData(folder)
    np.savez(folder / SPLITS, **prepared.splits)
    truncate(folder / IMAGES)
    with pytest.raises(UnreadableFile, match=rf"{IMAGES} cannot be read as a NumPy archive \(.*\); "
                                             r"rebuild it with: dvc repro prepare$"):
        PreparedData(folder)


def test_a_missing_or_unreadable_bank_names_the_stage_that_rebuilds_it(tmp_path):
    path = tmp_path / "banks" / "at_wide_seed2.npz"
    path.parent.mkdir()
    with pytest.raises(ParamError, match=r"seed2.npz is missing; run the stage that writes it first "
                                         r"\(dvc repro bank@at_wide-2\)$"):
        FeatureBank.load(path)
    FeatureBank({"conv4": np.zeros((4, 3), np.float32)}, np.arange(4), search="torch", device="cpu").save(path)
    assert FeatureBank.load(path)[0].labels.tolist() == [0, 1, 2, 3]
    truncate(path)
    with pytest.raises(UnreadableFile, match=r"seed2.npz cannot be read.*rebuild it with: dvc repro bank@at_wide-2$"):
        FeatureBank.load(path)


def test_more_askdef_references_than_a_class_has_images_is_refused_before_training(prepared):
    fewest = int(torch.bincount(prepared.split("train")[1]).min())
    cfg = TrainConfig(epochs=1, pgd_steps=1)
    term = AskDefTerm(prepared, cfg, 1.0, 0.1, "cosine", "conv4", fewest, 8, 1, 2.0)   # the most it can take
    assert len(term.reference_picks("cpu")) == fewest * prepared.num_classes
    with pytest.raises(ParamError, match=rf"methods.askdef.refs_per_class = {fewest + 1} but the training split "
                                         rf"has {fewest} images of its smallest class; set it to at most {fewest}$"):
        AskDefTerm(prepared, cfg, 1.0, 0.1, "cosine", "conv4", fewest + 1, 8, 1, 2.0)


def test_more_processes_than_gpus_is_refused_with_the_fix(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(os, "execv", lambda *a: pytest.fail("torchrun started"))
    with pytest.raises(ParamError, match=r"train.nproc = 3 processes .* this machine has 2 GPU\(s\); "
                                         r"set train.nproc to at most 2, one process per GPU$"):
        relaunch("stages/train.py", ["at", "0"], 3)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)   # a process torchrun started by hand
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    with pytest.raises(ParamError, match="train.nproc = 4 processes"):
        setup()
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)       # no GPU: any count trains on the CPU
    check_gpus(8)


class NotAllowed:
    """Any class: weights_only loading refuses to unpickle it."""


@pytest.mark.parametrize("fault", ["truncated", "refused"])
def test_an_unreadable_checkpoint_is_set_aside_and_training_starts_over(prepared, tmp_path, fault):
    straight = train_once(prepared, tmp_path / "straight.pt")
    checkpoint = tmp_path / "checkpoints" / "at-0123.pt"
    if fault == "truncated":
        train_once(prepared, checkpoint)
        truncate(checkpoint)
    else:
        save_torch(checkpoint, {"model": NotAllowed(), "epoch": 1})
    with pytest.warns(RuntimeWarning, match=f"checkpoint {checkpoint} cannot be resumed.*starts over"):
        again = train_once(prepared, checkpoint)
    assert (checkpoint.parent / "at-0123.pt.unreadable").exists()
    for key in straight:   # the same weights as a run that never had a checkpoint
        torch.testing.assert_close(again[key], straight[key], rtol=0, atol=0)
    assert not leftovers(tmp_path)


def test_a_checkpoint_that_loads_halfway_leaves_the_fresh_model_untouched(tmp_path):
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    fresh = copy.deepcopy(model.state_dict())
    other = torch.nn.Linear(3, 2)   # the model loads, the optimizer's state does not
    save_torch(tmp_path / "c.pt", {"model": other.state_dict(), "optimizer": {"bad": 1}, "epoch": 3, "history": []})
    with pytest.warns(RuntimeWarning, match="c.pt cannot be resumed"):
        assert load_checkpoint(tmp_path / "c.pt", model, optimizer, 1, 100) == (0, [])
    for key in fresh:
        assert torch.equal(model.state_dict()[key], fresh[key])


def test_an_unreadable_model_file_names_the_file_and_the_stage_that_rebuilds_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data, params = types.SimpleNamespace(num_classes=10, channels=1), {"model": {"name": "small_cnn", "width": 1.0}}
    model = create_model("small_cnn", in_channels=1)
    save_weights(model_path("at", 1), model.state_dict(), {"model": "small_cnn"})
    assert load_trained("at", 1, params, data) is not None
    truncate(model_path("at", 1))
    with pytest.raises(UnreadableFile, match=r"models/at_seed1.safetensors cannot be read.*dvc repro train@at-1"):
        load_trained("at", 1, params, data)
    save_weights(model_path("at", 1), torch.nn.Linear(2, 2).state_dict())   # readable, but another network
    with pytest.raises(UnreadableFile, match=r"models/at_seed1.safetensors does not fit model 'small_cnn'.*train@at-1"):
        load_trained("at", 1, params, data)


# ---------------------------------------------------------------- archives
@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
def test_a_truncated_archive_is_named_and_leaves_no_partial_folder(tmp_path, kind):
    tree = image_tree(tmp_path / "cifar")
    archive = tmp_path / f"cifar.{kind}"
    if kind == "zip":
        shutil.make_archive(str(tmp_path / "cifar"), "zip", tmp_path, "cifar")
    else:
        tar_gz(tree, archive)
    truncate(archive, 0.6)
    raw = tmp_path / "raw"
    with pytest.raises(DataError, match=f"archive {archive} cannot be unpacked.*truncated or corrupted"):
        load_dataset("cifar10", source=str(archive), root=raw)
    assert not leftovers(tmp_path) and not (raw / "cifar").exists()


def test_a_truncated_gz_file_is_named(tmp_path):
    folder = fashion_folder(tmp_path / "fmnist")
    truncate(folder / "t10k-images-idx3-ubyte.gz")
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz cannot be read.*truncated"):
        load_dataset("fashion_mnist", source=str(folder))


def test_an_archive_replaced_at_the_same_path_is_unpacked_again_and_its_hash_changes(tmp_path):
    archive, raw = tmp_path / "cifar.tar.gz", tmp_path / "raw"
    tar_gz(image_tree(tmp_path / "v1" / "cifar", colour=0), archive)
    first = load_dataset("cifar10", source=str(archive), root=raw)
    tar_gz(image_tree(tmp_path / "v2" / "cifar", colour=200), archive)
    second = load_dataset("cifar10", source=str(archive), root=raw)
    assert first.source_sha256 != second.source_sha256 and len(second.source_sha256) == 64
    assert (first.x_train[:, 0] == 0).all() and (second.x_train[:, 0] == 200).all()   # the new images
    again = load_dataset("cifar10", source=str(archive), root=raw)                    # unchanged: reused
    assert again.source_sha256 == second.source_sha256
    assert not leftovers(tmp_path)


def test_the_prepare_stage_records_the_source_hash(tmp_path, monkeypatch):
    folder = fashion_folder(tmp_path / "fmnist")
    shutil.copytree(ROOT / "presets", tmp_path / "presets")
    (tmp_path / "params.yaml").write_text("preset: fashion_mnist\neps: 8\nseeds: [0]\n")
    edit = preset_config("fashion_mnist", ROOT)
    edit["data"].update(source=str(folder), train_size=None, val_size=10, bank_size=10, eval_size=10)
    edit["attacks"]["tuning_size"], edit["attacks"]["worst_case_size"] = 10, 10
    edit["experiments"]["table_size"] = edit["experiments"]["subset_size"] = 10
    edit["dknn"]["k"] = edit["attacks"]["ask"]["k_pos"] = edit["attacks"]["ask"]["k_neg"] = 1
    edit["attacks"]["sw20"]["guides_grid"] = [1]
    edit["attacks"]["dknn_atk"]["guides"] = "k"   # a bank of one image a class
    for key in ("k_values", "k_pos_values", "k_neg_values"):
        edit["experiments"][key] = [1]
    (tmp_path / "presets" / "fashion_mnist.yaml").write_text(yaml.safe_dump(edit))
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(ROOT / "stages" / "prepare.py"), run_name="__main__")
    recorded = yaml.safe_load((tmp_path / "metrics" / "data.json").read_text())
    assert recorded["source"] == str(folder) and len(recorded["source_sha256"]) == 64
    assert not leftovers(tmp_path)


# ---------------------------------------------------------------- interrupted writes
KILLED_WRITE = """
import os, signal, sys
from askknn.io import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    tmp.write_text('{"half": ')
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_write_killed_midway_leaves_a_temporary_that_dvc_ignores_and_the_next_write_removes(tmp_path):
    target = tmp_path / "metrics" / "train" / "at.json"
    done = subprocess.run([sys.executable, "-c", KILLED_WRITE, str(target)], capture_output=True)
    assert done.returncode == -signal.SIGKILL
    stale = stale_temporaries(target)
    assert len(stale) == 1 and not target.exists()
    patterns = [line.strip() for line in (ROOT / ".dvcignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    assert any(fnmatch.fnmatch(stale[0].name, pattern) for pattern in patterns)   # invisible to DVC
    other = target.with_name("askdef.json")
    other.write_text("{}")
    with atomic_path(target) as tmp:
        tmp.write_text("{}")
    assert sorted(p.name for p in target.parent.iterdir()) == ["askdef.json", "at.json"]


def test_dvc_itself_ignores_the_temporaries_and_python_s_bytecode(tmp_path):
    """A bytecode cache written on import would otherwise change the hash of every package directory
    a stage depends on (askknn/attacks, askknn/config), and a clone would re-run the whole pipeline."""
    dvc = shutil.which("dvc")
    if dvc is None:
        pytest.skip("dvc is not on PATH")
    subprocess.run([dvc, "init", "--no-scm", "-q"], cwd=tmp_path, check=True)
    shutil.copy(ROOT / ".dvcignore", tmp_path / ".dvcignore")
    (tmp_path / "metrics").mkdir()
    (tmp_path / "askknn" / "attacks" / "__pycache__").mkdir(parents=True)
    ignored_names = ["metrics/.tmp-at.json-k2j3h4l5.json", "askknn/attacks/__pycache__/ask.cpython-311.pyc"]
    names = [*ignored_names, "metrics/at.json", "askknn/attacks/ask.py"]
    ignored = subprocess.run([dvc, "check-ignore", *names], cwd=tmp_path, capture_output=True, text=True)
    assert ignored.stdout.split() == ignored_names


# ---------------------------------------------------------------- unknown preset
def test_an_unknown_preset_stops_the_first_stage_with_a_clear_error_and_writes_nothing(project, monkeypatch, capsys):
    (project / "params.yaml").write_text("preset: nope\neps: 8\n")
    monkeypatch.chdir(project)
    monkeypatch.delenv("ASKKNN_DEBUG", raising=False)
    with pytest.raises(SystemExit) as stopped:
        runpy.run_path(str(ROOT / "stages" / "check_params.py"), run_name="__main__")
    assert stopped.value.code == 2
    assert ("error: preset = 'nope' is unknown; allowed: cifar10, cifar10_cpu, cifar10_fast, fashion_mnist"
            in capsys.readouterr().err)
    assert not (project / "metrics").exists()
    (project / "params.yaml").write_text("preset: tiny\neps: 8\nseeds: [0]\n")
    runpy.run_path(str(ROOT / "stages" / "check_params.py"), run_name="__main__")
    assert yaml.safe_load((project / "metrics" / "preset.json").read_text()) == {"preset": "tiny"}


# ---------------------------------------------------------------- byte-reproducible outputs
SAVE_IN_ANOTHER_PROCESS = """
import sys, torch
from askknn.io import save_weights
torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4))
save_weights(sys.argv[1], net.state_dict(), {"model": "m", "method": "at", "epochs": 3})
"""


def test_identical_weights_give_identical_files(tmp_path):
    paths = [tmp_path / f"{i}" / "at.safetensors" for i in range(3)]
    subprocess.run([sys.executable, "-c", SAVE_IN_ANOTHER_PROCESS, str(paths[0])], check=True)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4))
    for path in paths[1:]:   # metadata in another order: safetensors alone would write it in a random order
        save_weights(path, net.state_dict(), {"epochs": 3, "method": "at", "model": "m"})
    assert paths[0].read_bytes() == paths[1].read_bytes() == paths[2].read_bytes()
    tensors, meta = load_weights(paths[2])
    assert meta == {"model": "m", "method": "at", "epochs": 3} and torch.equal(tensors["0.weight"], net[0].weight)
    save_torch(tmp_path / "a.pt", {"w": torch.ones(3)})            # checkpoints too, whatever their name
    save_torch(tmp_path / "b.pt", {"w": torch.ones(3)})
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()


# ---------------------------------------------------------------- packaging
def test_the_egg_info_is_neither_tracked_nor_shown_as_untracked():
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout")
    tracked = subprocess.run(["git", "ls-files", "askknn.egg-info"], cwd=ROOT, capture_output=True, text=True)
    assert tracked.stdout == ""
    ignored = subprocess.run(["git", "check-ignore", "-q", "askknn.egg-info/PKG-INFO"], cwd=ROOT)
    assert ignored.returncode == 0


def test_a_bad_parameter_ends_a_stage_with_one_line_and_the_traceback_only_on_request(project):
    (project / "params.yaml").write_text("preset: tiny\neps: 999\nseeds: [0]\n")
    env = {k: v for k, v in os.environ.items() if k != "ASKKNN_DEBUG"}
    done = subprocess.run([sys.executable, str(ROOT / "stages" / "check_params.py")], cwd=project,
                          capture_output=True, text=True, env=env)
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and "eps" in done.stderr and len(done.stderr.splitlines()) == 1
    debug = subprocess.run([sys.executable, str(ROOT / "stages" / "check_params.py")], cwd=project,
                           capture_output=True, text=True, env={**env, "ASKKNN_DEBUG": "1"})
    assert "Traceback" in debug.stderr and "ParamError" in debug.stderr
