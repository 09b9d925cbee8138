"""DDP training with the gloo backend on 2 CPU processes (torch.multiprocessing.spawn), against the
single-process loop with the same global batch; resuming, the global batch, a short last batch, and
the SNN loss over the ranks."""
from __future__ import annotations

import datetime
import importlib.util
import math
import os
import re
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from askknn.data import PreparedData, make_splits, save_prepared
from askknn.defenses import SnnTerm, extra_term
from askknn.io import load_torch, save_torch
from askknn.losses import snn_loss
from askknn.models import create_model
from askknn.params import preset_config
from askknn.runtime import run_stage
from askknn.checkpoints import CheckpointMismatch
from askknn.training import TrainConfig, load_checkpoint, train_model

ROOT = Path(__file__).resolve().parents[1]
WORLD = 2
# DDP against one process with the same global batch and learning rate (DDP: 2 x 50 images at 2 x
# 0.025; one process: 100 at 0.05; 6 steps), compared without random draws (AT at eps 0: no random
# start). The ranks normalise BatchNorm over their half of each batch (SyncBatchNorm is CUDA-only);
# on small_cnn at 8x8 the deep blocks are 1x1, so BatchNorm normalises over 50 instead of 100 values
# and the gradients differ by far more than rounding. Measured on this CPU: the updates (final -
# initial weights) at cosine 0.87, differing by 0.50 of their size; two single-process runs that
# differ only in their PGD random starts differ as much (cosine 0.80, 0.63). A gradient summed
# instead of averaged over the ranks gives a relative difference near 1; unsynchronised gradients
# fail the first check (identical ranks).
MIN_COSINE, MAX_RELATIVE = 0.8, 0.7


def config(epochs: int, eps: int = 16, batch_size: int = 100, lr: float = 0.05) -> TrainConfig:
    return TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, eps=eps, pgd_steps=2, pgd_step_size=8,
                       val_pgd_steps=1, milestones=[1])


def train(folder: Path, checkpoint: Path, cfg: TrainConfig, method: str) -> dict:
    """The weights, the history (without its timings, which differ between ranks) and the log lines."""
    data = PreparedData(folder)
    params = preset_config("tiny", ROOT)
    torch.manual_seed(0)
    model = create_model("small_cnn", in_channels=1)
    log = []
    history = train_model(model, data, cfg, checkpoint, extra_term(method, params, data, cfg), log=log.append)
    return {"weights": model.state_dict(), "log": log,
            "history": [{k: v for k, v in h.items() if k != "epoch_seconds"} for h in history]}


def join(rank: int, port: int) -> None:
    """Join a gloo group of WORLD processes; a rank left waiting for another fails within a minute."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD, timeout=datetime.timedelta(seconds=60))


def worker(rank: int, port: int, folder: Path, checkpoint: str, cfg: TrainConfig, method: str, out: Path) -> None:
    join(rank, port)
    try:
        result = train(folder, Path(checkpoint.format(rank=rank)), cfg, method)
    except Exception as exc:   # kept, not raised: spawn would stop the other rank before it fails on its own
        result = {"error": str(exc)}
    finally:
        dist.destroy_process_group()
    torch.save(result, out / f"rank{rank}.pt")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(fn, *args) -> None:
    mp.spawn(fn, args=(free_port(), *args), nprocs=WORLD)


def ddp(folder: Path, checkpoint: Path | str, cfg: TrainConfig, out: Path, method: str = "askdef",
        errors: bool = False) -> list[dict]:
    """Every rank's train() result; a rank that raised gives {"error": message}, a failure here unless
    `errors`. A `checkpoint` holding "{rank}" gives each rank its own path, as on separate machines."""
    out.mkdir(exist_ok=True)
    spawn(worker, folder, str(checkpoint), cfg, method, out)
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    assert errors or not any("error" in r for r in ranks), [r.get("error") for r in ranks]
    return ranks


def prepared(folder: Path, digits, train_images: int = 300) -> Path:
    splits = make_splits(digits.y_train, digits.y_test, val_size=100, bank_size=200, eval_size=50,
                         train_size=300, seed=0)
    splits["train"] = splits["train"][:train_images]
    save_prepared(folder, digits, splits)
    return folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory, digits):
    return prepared(tmp_path_factory.mktemp("prepared"), digits)


def flat(state: dict, keys) -> torch.Tensor:
    return torch.cat([state[k].flatten().float() for k in keys])


def assert_same(a, b) -> None:
    """Equal weights and histories, to the bit."""
    torch.testing.assert_close(a["weights"], b["weights"], rtol=0, atol=0)
    assert a["history"] == b["history"]


@pytest.mark.slow   # about a minute: four pairs of processes start torch
def test_ddp_ranks_agree_resume_and_match_one_process(folder, tmp_path):
    ranks = ddp(folder, tmp_path / "straight.pt", config(2), tmp_path / "straight")
    assert_same(ranks[0], ranks[1])   # parameters, BatchNorm buffers (broadcast each epoch), reduced metrics

    ddp(folder, tmp_path / "resumed.pt", config(1), tmp_path / "first")            # killed after epoch 1
    resumed = ddp(folder, tmp_path / "resumed.pt", config(2), tmp_path / "resumed")
    assert_same(resumed[0], ranks[0])

    clean = ddp(folder, tmp_path / "clean.pt", config(2, eps=0, batch_size=50, lr=0.025), tmp_path / "clean", "at")
    single = train(folder, tmp_path / "single.pt", config(2, eps=0), "at")
    torch.manual_seed(0)
    initial = create_model("small_cnn", in_channels=1).state_dict()
    params = [k for k, v in initial.items() if v.is_floating_point() and "running" not in k]
    ddp_update, single_update = (flat(s["weights"], params) - flat(initial, params) for s in (clean[0], single))
    assert F.cosine_similarity(ddp_update, single_update, dim=0) >= MIN_COSINE
    assert (ddp_update - single_update).norm() <= MAX_RELATIVE * single_update.norm()


@pytest.mark.slow   # two pairs of processes
def test_a_resume_needs_the_checkpoint_on_rank_0_only(folder, tmp_path):
    node = tmp_path / "node{rank}" / "c.pt"   # each rank's own models/, as on separate machines
    ddp(folder, node, config(1), tmp_path / "first")                        # killed after epoch 1
    assert not (tmp_path / "node1").exists()                                # rank 0 alone wrote it
    resumed = ddp(folder, node, config(2), tmp_path / "resumed")
    assert_same(resumed[0], resumed[1])
    assert [h["epoch"] for h in resumed[1]["history"]] == [1, 2]           # epoch 1 from rank 0's file
    assert any("resuming" in line for line in resumed[0]["log"])


def test_a_checkpoint_resumes_only_under_its_world_size_and_global_batch(folder, tmp_path):
    checkpoint = tmp_path / "c.pt"
    train(folder, checkpoint, config(1), "at")
    state = load_torch(checkpoint)
    assert (state["world_size"], state["global_batch"]) == (1, 100)
    model = create_model("small_cnn", in_channels=1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for world, global_batch, differ in [(2, 100, "world size 1 (this run: 2);"),
                                        (1, 50, "global batch 100 (this run: 50);")]:
        message = re.escape(f"{checkpoint} was written with {differ}") + "[^\n]*delete the checkpoint"
        with pytest.raises(CheckpointMismatch, match=message):
            load_checkpoint(checkpoint, model, optimizer, world, global_batch)
    assert checkpoint.exists()   # refused, not set aside
    del state["world_size"], state["global_batch"]   # as written before they were recorded
    save_torch(checkpoint, state)
    assert load_checkpoint(checkpoint, model, optimizer, 1, 100)[0] == 1


@pytest.mark.slow   # a pair of processes
def test_resuming_under_another_world_size_fails_on_every_rank(folder, tmp_path):
    train(folder, tmp_path / "c.pt", config(1), "at")   # one process, interrupted after epoch 1
    ranks = ddp(folder, tmp_path / "c.pt", config(2, batch_size=50), tmp_path / "ddp", "at", errors=True)
    for rank in ranks:   # the same global batch (2 x 50), but not the same processes
        assert "was written with world size 1 (this run: 2);" in rank.get("error", "")


@pytest.mark.slow   # a pair of processes
def test_the_global_batch_and_the_learning_rate_grow_with_the_processes(folder, tmp_path):
    ranks = ddp(folder, tmp_path / "c.pt", config(1, batch_size=50, lr=0.025), tmp_path / "ddp", "at")
    assert ranks[0]["log"][0] == "global batch 100 = 2 x 50, lr 0.05 = 2 x 0.025 (linear scaling)"
    assert [(h["global_batch"], h["lr"]) for h in ranks[1]["history"]] == [(100, 0.05)]
    state = load_torch(tmp_path / "c.pt")
    assert (state["world_size"], state["global_batch"]) == (2, 100)


def snn_worker(rank: int, port: int, features: torch.Tensor, labels: torch.Tensor, out: Path) -> None:
    """The SNN term of this rank's half of the batch, through DDP, and the weight's synchronised gradient."""
    join(rank, port)
    try:
        torch.manual_seed(0)
        layer = torch.nn.Linear(features.shape[1], 3, dtype=torch.float64)
        net = torch.nn.parallel.DistributedDataParallel(layer)
        half = slice(rank * len(labels) // WORLD, (rank + 1) * len(labels) // WORLD)
        term = SnnTerm(beta=1.0, temperature=0.5, distance="cosine", layer="f", features="adversarial")
        loss = term(layer, None, labels[half], None, {"f": net(features[half])}, net)
        loss.backward()
        torch.save({"loss": loss.detach(), "grad": layer.weight.grad}, out / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_the_snn_loss_over_ranks_is_the_loss_of_the_whole_batch(tmp_path):
    torch.manual_seed(1)
    features, labels = torch.randn(8, 5, dtype=torch.float64), torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    spawn(snn_worker, features, labels, tmp_path)   # no image has a same-class partner in its own half
    torch.manual_seed(0)
    layer = torch.nn.Linear(5, 3, dtype=torch.float64)
    loss = snn_loss(layer(features), labels, 0.5, "cosine")
    loss.backward()
    for rank in range(WORLD):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        torch.testing.assert_close(got["loss"], loss.detach())
        torch.testing.assert_close(got["grad"], layer.weight.grad)


@pytest.mark.slow   # a pair of processes
def test_a_last_batch_smaller_than_the_processes_is_dropped_not_nan(tmp_path, digits):
    odd = prepared(tmp_path / "prepared", digits, train_images=201)   # global batches of 100, 100 and 1
    ranks = ddp(odd, tmp_path / "c.pt", config(1, batch_size=50), tmp_path / "ddp", "at")
    assert math.isfinite(ranks[0]["history"][0]["train_loss"])
    assert all(w.isfinite().all() for w in ranks[0]["weights"].values() if w.is_floating_point())
    assert_same(ranks[0], ranks[1])


def train_stage():
    """stages/train.py as a module (its main() runs only as a script)."""
    spec = importlib.util.spec_from_file_location("train_stage", Path(__file__).parents[1] / "stages" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_stage_finds_its_checkpoint_under_another_process_count_and_refuses_it_in_one_line(
        tmp_path, monkeypatch, capsys):
    params = preset_config("tiny")
    monkeypatch.chdir(tmp_path)
    Path("data/prepared").mkdir(parents=True)
    for name in ("images.npz", "train_split.npz"):
        Path("data/prepared", name).write_bytes(b"stand-in")
    stage = train_stage()
    path = stage.checkpoint_path("at", 0, params)
    for change in ({"nproc": 4}, {"launcher": "torchrun"}):   # resumed by DDP: the same checkpoint
        assert stage.checkpoint_path("at", 0, {**params, "train": {**params["train"], **change}}) == path
    other_batch = {**params, "train": {**params["train"], "batch_size": params["train"]["batch_size"] + 1}}
    assert stage.checkpoint_path("at", 0, other_batch) != path   # another run, never resumed from this one

    def mismatch():
        raise CheckpointMismatch(f"checkpoint {path} was written with world size 1 (this run: 4)")
    with pytest.raises(SystemExit) as stop:
        run_stage(mismatch)
    assert stop.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"error: checkpoint {path} was written with world "
                                                            "size 1 (this run: 4)"]
