"""Shared fixtures: scikit-learn's digits, a small CNN trained on them in seconds, and its bank."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from askknn.bank import FeatureBank, extract_features
from askknn.data import balanced_sample, load_digits_dataset, to_float
from askknn.dknn import DeepKNN
from askknn.models import create_model

LAYERS = ["conv3", "conv4"]


def pytest_configure(config):
    """Under pytest-xdist (`-n`), the workers share the cores: each worker's torch, and the stages
    the pipeline tests start, get their share of the threads instead of all of them each."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:
        threads = max(1, (os.cpu_count() or 1) // int(workers))
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)


def pytest_collection_modifyitems(config, items):
    """The end-to-end runs first: under `-n` the longest tests start at once and the short ones
    fill the other workers around them, instead of one long test starting last."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session")
def digits():
    return load_digits_dataset(seed=0)


@pytest.fixture(scope="session")
def digits_model(digits):
    """small_cnn trained with plain CE on digits (about 95% test accuracy), in eval mode."""
    torch.manual_seed(0)
    model = create_model("small_cnn", num_classes=10, in_channels=1)
    x, y = to_float(torch.from_numpy(digits.x_train)), torch.from_numpy(digits.y_train)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(15):
        for idx in torch.randperm(len(y)).split(64):
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model.eval()


@pytest.fixture(scope="session")
def digits_bank(digits, digits_model):
    idx = balanced_sample(digits.y_train, np.arange(len(digits.y_train)), 60, np.random.default_rng(0), "bank")
    feats = extract_features(digits_model, torch.from_numpy(digits.x_train[idx]), LAYERS)
    return FeatureBank(feats, digits.y_train[idx])


@pytest.fixture(scope="session")
def digits_eval(digits):
    """The first 100 test digits as float inputs and labels."""
    return to_float(torch.from_numpy(digits.x_test[:100])), torch.from_numpy(digits.y_test[:100])


@pytest.fixture(scope="session")
def digits_dknn(digits_bank):
    return DeepKNN(digits_bank, ["conv4"], k=5, metric="cosine")


@pytest.fixture
def tracked_copy(tmp_path) -> Path:
    """A copy of the project's git-tracked files (what a fresh clone holds) in tmp_path/project."""
    root, copy = Path(__file__).resolve().parents[1], tmp_path / "project"
    files = subprocess.run(["git", "ls-files"], cwd=root, check=True, capture_output=True, text=True).stdout.split()
    for name in files:
        if (root / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / name, copy / name)
    return copy
