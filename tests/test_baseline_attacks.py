"""The two baseline attacks of the ASK paper's comparison (App. C), DkNN-Atk and AdvKnn, and SW20
(shared tests only; its own are in test_sw20.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from askknn.attacks.advknn import AdvKnnAttack
from askknn.knn_blocks import (knn_agreement, bank_knn_votes, knn_votes, load_blocks, save_blocks, train_knn_block,
                               without_self)
from askknn.attacks.dknn_attack import DkNNAttack, dknn_thresholds
from askknn.attacks.ask_apgd import ASKAPGDAttack
from askknn.attacks.sw20 import SW20Attack
from askknn.bank import FeatureBank, extract_features
from askknn.dknn import DeepKNN, accuracy
from askknn.shared import ParamError

LAYERS = ["conv3", "conv4"]
EPS = 0.1


@pytest.fixture(scope="module")
def held_out(digits, digits_model):
    """Features of the test digits not in digits_eval: never in the bank, never attacked."""
    return extract_features(digits_model, torch.from_numpy(digits.x_test[100:]), LAYERS)


@pytest.fixture(scope="module")
def thresholds(digits_bank, held_out):
    return dknn_thresholds(digits_bank, held_out, LAYERS, 5, "cosine")


@pytest.fixture(scope="module")
def block(digits_bank):
    return train_knn_block(digits_bank, LAYERS, k=5, metric="cosine", epochs=30)[0]


@pytest.fixture(params=["dknn_sign", "dknn_adam", "advknn", "sw20", "ask_apgd"])
def make_attack(request, digits_bank, thresholds, block):
    """Builds the attack named by the parameter on conv4 (30 guides: the digits bank holds 60 per class)."""
    def make(eps: float = EPS):
        if request.param == "advknn":
            return AdvKnnAttack(block, digits_bank, ["conv4"], eps)
        if request.param == "sw20":
            return SW20Attack(digits_bank, ["conv4"], eps, guides=5, k=5)
        if request.param == "ask_apgd":
            return ASKAPGDAttack(digits_bank, ["conv3", "conv4"], eps, k=5, steps=4, restarts=2)
        optimizer = request.param.split("_")[1]
        return DkNNAttack(digits_bank, ["conv4"], eps, thresholds, guides=30, optimizer=optimizer, adam_lr=0.5)
    return make


def brute_distances(queries: np.ndarray, bank: np.ndarray, metric: str) -> np.ndarray:
    if metric == "cosine":
        queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
        bank = bank / np.linalg.norm(bank, axis=1, keepdims=True)
    q, b = queries.astype(np.float64), bank.astype(np.float64)
    sq = (q ** 2).sum(1)[:, None] + (b ** 2).sum(1)[None] - 2 * q @ b.T
    return np.sqrt(np.maximum(sq, 0))


# ---------------------------------------------------------------- both attacks
def test_stays_in_the_ball_and_the_pixel_range(make_attack, digits_model, digits_eval):
    x, y = digits_eval
    torch.manual_seed(0)
    x_adv = make_attack()(digits_model, x, y)
    assert (x_adv - x).abs().max() <= EPS + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert (x_adv != x).any()


def test_runs_the_model_in_eval_mode_and_restores_its_mode(make_attack, digits_model, digits_eval):
    x, y = digits_eval
    modes = []
    # hooks on every submodule: the attacks call model.features, never the model's own forward
    hooks = [m.register_forward_hook(lambda module, inputs, output: modes.append(module.training))
             for m in digits_model.modules()]
    digits_model.train()
    try:
        make_attack()(digits_model, x[:8], y[:8])
        assert modes and not any(modes)
        assert digits_model.training
    finally:
        for hook in hooks:
            hook.remove()
        digits_model.eval()


def test_eps_zero_returns_the_input(make_attack, digits_model, digits_eval):
    x, y = digits_eval
    assert torch.equal(make_attack(eps=0.0)(digits_model, x, y), x)


@pytest.mark.parametrize("name", ["dknn_sign", "advknn"])
def test_lowers_dknn_accuracy(name, digits_model, digits_bank, digits_eval, digits_dknn, thresholds, block):
    # measured (conv4, cosine, eps 0.1, 20 sign steps): clean 0.98-0.99, DkNN-Atk 0.55-0.57, AdvKnn
    # 0.53-0.61; the digits model differs slightly with the number of torch threads
    x, y = digits_eval
    attack = (AdvKnnAttack(block, digits_bank, ["conv4"], EPS) if name == "advknn"
              else DkNNAttack(digits_bank, ["conv4"], EPS, thresholds, guides=30))
    torch.manual_seed(0)
    clean = accuracy(digits_dknn.predict_inputs(digits_model, x), y)
    attacked = accuracy(digits_dknn.predict_inputs(digits_model, attack(digits_model, x, y)), y)
    assert clean >= 0.9
    assert attacked <= clean - 0.2


# ---------------------------------------------------------------- DkNN-Atk
@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_thresholds_match_brute_force(metric, digits_bank, held_out):
    k = 5
    eta = dknn_thresholds(digits_bank, held_out, LAYERS, k, metric)
    for layer in LAYERS:
        dist = np.sort(brute_distances(held_out[layer], digits_bank.features[layer], metric), axis=1)
        assert eta[layer] == pytest.approx(dist[:, k - 1].mean(), rel=1e-4)


@pytest.mark.parametrize("change, name", [
    ({"guides": 61}, "guides"),
    ({"guides": 0}, "guides"),
    ({"steepness": -1.0}, "steepness"),
    ({"optimizer": "lbfgs"}, "optimizer"),
    ({"metric": "manhattan"}, "metric"),
    ({"thresholds": {"conv3": 0.3}}, "thresholds"),
])
def test_dknn_attack_rejects_bad_parameters(change, name, digits_bank, thresholds):
    kwargs = {"thresholds": thresholds, "guides": 30, **change}
    with pytest.raises(ParamError, match=name):
        DkNNAttack(digits_bank, LAYERS, EPS, **kwargs)


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_dknn_attack_at_steepness_zero_is_the_flat_sigmoids_limit(metric, digits_model, digits_eval, digits_bank,
                                                                   held_out):
    """a = 0 ascends the direction that a small a's gradient tends to, so sign steps take the same path."""
    x, y = digits_eval
    eta = dknn_thresholds(digits_bank, held_out, LAYERS, 5, metric)

    def attack(a):
        return DkNNAttack(digits_bank, LAYERS, EPS, eta, metric=metric, guides=5, steepness=a, seed=0)

    def gradient(a):
        x_in = x.clone().requires_grad_(True)
        att = attack(a)
        return torch.autograd.grad(att.loss(digits_model, x_in, y, att.prepare(digits_model, x, y)).sum(), x_in)[0]

    flat, small, steep = gradient(0.0).flatten(1), gradient(1e-4).flatten(1), gradient(64.0).flatten(1)
    assert torch.nn.functional.cosine_similarity(flat, small).min() > 0.999
    assert torch.nn.functional.cosine_similarity(flat, steep).min() < 0.9   # a steep sigmoid weighs guides unequally
    agree = (attack(0.0)(digits_model, x, y) == attack(1e-4)(digits_model, x, y)).float().mean()
    assert agree > 0.99


# ---------------------------------------------------------------- AdvKnn
@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_histograms_exclude_the_point_itself(metric, digits_bank):
    k = 5
    hist = bank_knn_votes(digits_bank, LAYERS, k, metric)
    for layer in LAYERS:
        dist = brute_distances(digits_bank.features[layer], digits_bank.features[layer], metric)
        np.fill_diagonal(dist, np.inf)
        labels = digits_bank.labels[np.argsort(dist, axis=1, kind="stable")[:, :k]]
        expected = (labels[..., None] == np.arange(digits_bank.num_classes)).mean(1)
        np.testing.assert_allclose(hist[layer][0], expected)


def test_histograms_with_duplicate_points():
    # three copies of the origin (class 0): each one's neighbours are the two other copies and
    # the nearest class-1 point, never itself
    features = np.array([[0, 0], [0, 0], [0, 0], [9, 9], [9, 8], [8, 9],
                         [1, 0], [2, 0], [3, 0], [-9, -9], [-9, -8], [-8, -9]], dtype=np.float32)
    bank = FeatureBank({"conv4": features}, np.repeat([0, 1], 6))
    hist, label = bank_knn_votes(bank, ["conv4"], 3, "l2")["conv4"]
    np.testing.assert_allclose(hist[:3], [[2 / 3, 1 / 3]] * 3)
    np.testing.assert_array_equal(label[:3], [0, 0, 0])


def test_the_blocks_kNN_label_breaks_ties_as_the_dknn_does():
    # on the line, class 1 at 1 and 3, class 0 at 2 and 4: K = 4 splits 2-2 for a query at 0, and the
    # nearest neighbour's class (1) wins, as in the DkNN, not the first class index
    bank = FeatureBank({"conv4": np.array([[1.0], [2.0], [3.0], [4.0], [40.0], [41.0], [42.0], [43.0]],
                                          dtype=np.float32)}, np.array([1, 0, 1, 0, 0, 0, 1, 1]))
    query = {"conv4": np.array([[0.0]], dtype=np.float32)}
    hist, label = knn_votes(bank, "conv4", "l2", query["conv4"], 4)
    np.testing.assert_allclose(hist, [[0.5, 0.5]])
    assert label.tolist() == [1] == DeepKNN(bank, ["conv4"], 4, "l2").votes(query)[1].tolist()


def test_without_self_drops_the_last_when_copies_push_self_out():
    idx = np.array([[1, 2, 3], [0, 2, 1], [2, 1, 0]])
    np.testing.assert_array_equal(without_self(idx), [[1, 2], [0, 2], [1, 0]])


def test_trained_block_agrees_with_the_real_knn(block, digits_bank, held_out):
    agreement = knn_agreement(block, digits_bank, held_out, LAYERS, 5, "cosine")
    assert min(agreement.values()) >= 0.8


def test_training_lowers_the_loss_and_the_blocks_round_trip(digits_bank, block, tmp_path):
    single, history = train_knn_block(digits_bank, ["conv4"], epochs=3)
    assert len(history) == 3 and history[-1] < history[0]
    save_blocks(tmp_path / "blocks.safetensors", {"single": single, "multi": block})
    copies = load_blocks(tmp_path / "blocks.safetensors")   # safetensors: no pickle at all
    assert copies["single"].lam == 20.0 and copies["multi"].lam == block.lam == 0.3   # the original's defaults
    f = {layer: torch.from_numpy(digits_bank.features[layer][:4]) for layer in LAYERS}
    for layer, logits in copies["multi"](f).items():
        assert torch.equal(logits, block(f)[layer])


def test_the_attack_ascends_the_loss_its_block_was_trained_with(digits_bank, block):
    attack = AdvKnnAttack(block, digits_bank, ["conv4"], EPS)
    assert attack.block.lam == block.lam and attack.ce_share == pytest.approx(0.3 / 1.3)   # KL + 0.3 CE
    with pytest.raises(ParamError, match="lam = -1"):
        train_knn_block(digits_bank, ["conv4"], epochs=1, lam=-1.0)
    with pytest.raises(ParamError, match=r"ce_share = 1.5 must lie in \[0, 1\]"):
        AdvKnnAttack(block, digits_bank, ["conv4"], EPS, ce_share=1.5)


def test_the_attack_objective_is_the_share_weighted_kl_and_ce(digits_model, digits_eval, digits_bank, block):
    x, y = digits_eval
    parts = {}
    for share in (0.0, 0.25, 1.0):
        attack = AdvKnnAttack(block, digits_bank, LAYERS, EPS, ce_share=share)
        parts[share] = attack.loss(digits_model, x, y, attack.prepare(digits_model, x, y))
    assert torch.allclose(parts[0.25], 0.75 * parts[0.0] + 0.25 * parts[1.0], atol=1e-5)
    assert not torch.allclose(parts[0.0], parts[1.0])


@pytest.mark.parametrize("change, name", [
    ({"k": 61}, "k"),
    ({"metric": "manhattan"}, "metric"),
    ({"layers": ["conv2"]}, "layer"),
])
def test_advknn_rejects_bad_parameters(change, name, digits_bank, block):
    kwargs = {"layers": ["conv4"], **change}
    with pytest.raises(ParamError, match=name):
        AdvKnnAttack(block, digits_bank, eps=EPS, **kwargs)
