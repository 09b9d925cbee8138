"""CUDA graphs on the CPU: what a graph needs of the code it captures (no value read on the host), and
GraphedClimb's bookkeeping, checked with a stand-in capture that runs the captured call where the
graph would replay it (a buffer not refreshed before a replay then shows as a different result)."""
from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from askknn.attacks.advknn import AdvKnnAttack
from askknn.attacks.ask import ASKAttack
from askknn.attacks.dknn_attack import DkNNAttack, dknn_thresholds
from askknn.attacks.pgd import PGD
from askknn.bank import extract_features
from askknn.cuda_graphs import GraphedClimb, map_tensors, tensors_in
from askknn.data import PreparedData, make_splits, save_prepared
from askknn.defenses import extra_term
from askknn.knn_blocks import train_knn_block
from askknn.models import create_model
from askknn.params import preset_config
from askknn.training import TrainConfig, TrainLoop, train_step

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]
ATTACKS = ["ask_cosine", "ask_l2_nearest", "ask_random_negatives", "pgd_restarts", "dknn_sign", "advknn"]


@pytest.fixture(scope="module")
def block(digits_bank):
    return train_knn_block(digits_bank, ["conv4"], k=5, metric="cosine", epochs=5)[0]


@pytest.fixture
def make_attack(request, digits, digits_model, digits_bank, block):
    """The attack named by the parameter on conv4, seeded (every instance draws the same numbers)."""
    def make():
        name = request.param
        if name.startswith("ask"):
            options = {"ask_cosine": {}, "ask_l2_nearest": {"metric": "l2", "tau": 1.0, "target": "nearest"},
                       "ask_random_negatives": {"random_negatives": True, "k_pos": 3}}[name]
            return ASKAttack(digits_bank, ["conv4"], 0.1, steps=3, step_size=0.03, seed=0, **options)
        if name == "pgd_restarts":
            return PGD(0.1, steps=3, step_size=0.03, restarts=2, seed=0)
        if name == "advknn":
            return AdvKnnAttack(block, digits_bank, ["conv4"], 0.1, steps=3, step_size=0.03, seed=0)
        held_out = extract_features(digits_model, torch.from_numpy(digits.x_test[100:]), ["conv4"])
        thresholds = dknn_thresholds(digits_bank, held_out, ["conv4"], 5, "cosine")
        return DkNNAttack(digits_bank, ["conv4"], 0.1, thresholds, guides=5, steps=3, step_size=0.03, seed=0)
    return make


@pytest.mark.parametrize("make_attack", ATTACKS, indirect=True)
def test_graphed_climbs_give_the_eager_attack_batch_for_batch(make_attack, digits_model, digits_eval):
    """Batches of 30, 30, 30 and 10: the first runs eagerly (warm-up), the second is captured, the third
    replays with refreshed buffers, the smaller last one runs eagerly; every result is the eager one."""
    x, y = digits_eval
    eager, graphed = make_attack(), make_attack()
    replays = []

    def capture(run):
        def replay():
            replays.append(run)
            return run()
        return replay
    graphed.climb = GraphedClimb(graphed.climb, capture=capture, warm_up=nullcontext)
    for start in range(0, 100, 30):
        batch = slice(start, min(start + 30, 100))
        assert torch.equal(graphed(digits_model, x[batch], y[batch]), eager(digits_model, x[batch], y[batch]))
    assert len(replays) > len(set(replays))   # a graph replayed after its buffers were refreshed


@pytest.mark.parametrize("make_attack", ATTACKS, indirect=True)
def test_an_attacks_steps_read_no_value_on_the_host(make_attack, digits_model, digits_eval):
    """A CUDA graph cannot capture a step that reads a tensor's value on the host (.item(), a branch on a
    tensor, a boolean index): under FakeTensorMode such a read raises."""
    attack = make_attack()
    x, y = digits_eval[0][:20], digits_eval[1][:20]
    context, start = attack.prepare(digits_model, x, y), attack.start(x)   # eager in GraphedClimb too
    with FakeTensorMode(allow_non_fake_inputs=True):
        out = attack.climb(digits_model, x, y, context, start)
    assert out.shape == x.shape


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, digits):
    folder = tmp_path_factory.mktemp("prepared")
    save_prepared(folder, digits, make_splits(digits.y_train, digits.y_test, val_size=100, bank_size=200,
                                              eval_size=50, train_size=300, seed=0))
    return PreparedData(folder)


@pytest.mark.parametrize("method", ["at", "askdef", "atsnn"])
def test_a_training_step_reads_no_value_on_the_host(prepared, method):
    """What train.cuda_graphs captures: augmentation, the training attack, the method's loss term, the
    backward pass and the update."""
    cfg = TrainConfig(epochs=1, batch_size=100, eps=16, pgd_steps=2, pgd_step_size=8, augment="crop_flip")
    term = extra_term(method, preset_config("tiny", ROOT), prepared, cfg)
    model = create_model("small_cnn", in_channels=1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loop = TrainLoop(model, model, optimizer, cfg, torch.device("cpu"), 0, 1, cfg.training_pgd(), term,
                     getattr(term, "layers", []))
    x, y = torch.rand(100, 1, 8, 8), torch.arange(100) % 10
    with FakeTensorMode(allow_non_fake_inputs=True):
        loss = train_step(loop, x, y)
    assert loss.shape == ()


def test_map_tensors_rebuilds_contexts_and_lists_their_tensors_in_order():
    from askknn.losses import class_pooling
    a, b, y = torch.zeros(2, 3), torch.ones(2), torch.tensor([0, 1])
    context = ({"conv4": (a, class_pooling(None, y, 3, target=y), None)}, b)
    copy = map_tensors(torch.clone, context)
    assert [t.shape for t in tensors_in(copy)] == [(2, 3), (2, 3), (2,)]
    assert all(torch.equal(u, v) and u is not v for u, v in zip(tensors_in(copy), tensors_in(context)))
    assert copy[0]["conv4"][2] is None and type(copy[0]["conv4"][1]) is type(context[0]["conv4"][1])

    from askknn.attacks.sw20 import SW20References   # a NamedTuple context
    refs = SW20References(np.array([1]), np.array([[2, 3]]), torch.tensor([-1.0, 1.0]), {"conv4": (a, b, y)})
    rebuilt = map_tensors(torch.clone, refs)
    assert type(rebuilt) is SW20References and len(tensors_in(rebuilt)) == 4
    assert torch.equal(rebuilt.layers["conv4"][0], a) and rebuilt.layers["conv4"][0] is not a


@pytest.mark.parametrize("asked, device, graphed", [(True, "cuda", True), (True, "cpu", False),
                                                    (False, "cuda", False)])
def test_the_suite_graphs_attacks_where_asked_on_cuda_and_says_where_it_cannot(monkeypatch, asked, device, graphed):
    import warnings

    from askknn import experiments
    monkeypatch.setattr(experiments, "device", lambda: torch.device(device))
    attack = PGD(0.1, steps=2)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        assert experiments.on_device(attack, {"cuda_graphs": asked}) is attack
    assert isinstance(attack.climb, GraphedClimb) == graphed
    ignored = asked and device == "cpu"
    assert [str(w.message) for w in said] == (["attacks.cuda_graphs: ignored on the CPU; every attack runs eagerly"]
                                              if ignored else [])
