"""SW20 (Sitawarin & Wagner 2020) in fixed-budget l_inf form. The tests shared with the other
baseline attacks (l_inf ball, pixel range, eps 0, model mode) run through test_baseline_attacks.py."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from askknn.attacks.dknn_attack import dknn_thresholds
from askknn.attacks.sw20 import SW20Attack, other_neighbours
from askknn.bank import FeatureBank, extract_features
from askknn.dknn import accuracy
from askknn.models import BlockNet
from askknn.params import ParamError

LAYERS = ["conv3", "conv4"]
EPS = 0.1


@pytest.fixture(scope="module")
def thresholds(digits, digits_model, digits_bank):
    """eta_l from the test digits not in digits_eval (never in the bank, never attacked)."""
    held_out = extract_features(digits_model, torch.from_numpy(digits.x_test[100:]), LAYERS)
    return dknn_thresholds(digits_bank, held_out, LAYERS, 5, "cosine")


def identity_net() -> BlockNet:
    """Features = the input itself at every layer."""
    return BlockNet([nn.Identity() for _ in range(5)], nn.Identity()).eval()


# ---------------------------------------------------------------- on the digits model
def test_lowers_dknn_accuracy_well_below_clean_and_below_noise(digits_model, digits_bank, digits_eval, digits_dknn,
                                                               thresholds):
    # measured (conv4, cosine, eps 0.1, 20 sign steps): clean 0.98, random sign noise 0.95, SW20 0.52-0.54
    # (DkNN-Atk with 30 guides: 0.57)
    x, y = digits_eval
    torch.manual_seed(0)
    noisy = (x + EPS * torch.sign(torch.randn_like(x))).clamp(0, 1)
    attacked = SW20Attack(digits_bank, ["conv4"], EPS, thresholds, seed=0)(digits_model, x, y)
    clean_acc, noisy_acc, attacked_acc = (accuracy(digits_dknn.predict_inputs(digits_model, v), y)
                                          for v in (x, noisy, attacked))
    assert clean_acc >= 0.9
    assert attacked_acc <= clean_acc - 0.3
    assert noisy_acc >= attacked_acc + 0.25


# ---------------------------------------------------------------- the hinge on hand-made points
@pytest.fixture
def plane():
    """Two classes of three 2-D points; the identity net makes the DkNN a plain kNN on them."""
    points = np.array([[0.2, 0.2], [0.8, 0.8], [0.1, 0.9],      # class 0
                       [0.52, 0.5], [0.5, 0.53], [0.9, 0.1]],   # class 1
                      dtype=np.float32)
    return FeatureBank({"conv4": points}, np.repeat([0, 1], 3))


def hinge_and_grad(attack, x, y):
    net = identity_net()
    refs = attack.prepare(net, x, y)
    x = x.clone().requires_grad_(True)
    hinge = attack.hinge(net, x, refs)
    grad, = torch.autograd.grad(attack.loss(net, x, y, refs).sum(), x)
    return refs, hinge.detach(), grad


def test_hinge_is_zero_with_zero_gradient_exactly_when_every_constraint_holds(plane):
    # (0.5, 0.5): the two class-1 guides are 0.02 and 0.03 away, the class-0 points at least 0.42;
    # (0.2, 0.25): the class-0 point (0.2, 0.2) is nearer than both guides (and (0.1, 0.9) is not)
    x, y = torch.tensor([[0.5, 0.5], [0.2, 0.25]]), torch.tensor([0, 0])
    attack = SW20Attack(plane, ["conv4"], 0.1, {"conv4": 0.5}, metric="l2", guides=2, k=2)
    refs, hinge, grad = hinge_and_grad(attack, x, y)
    assert refs.target.tolist() == [1, 1]
    assert hinge[0] == 0 and torch.all(grad[0] == 0)
    assert hinge[1] > 0 and grad[1].abs().sum() > 0
    # the value, by hand: guides (0.52, 0.5), (0.5, 0.53); others (0.2, 0.2), (0.1, 0.9)
    assert refs.others["conv4"][1].tolist() == [0, 2]
    p = plane.features["conv4"].astype(np.float64)
    sq = ((p - [0.2, 0.25]) ** 2).sum(1)
    expected = np.maximum(sq[[3, 4]][:, None] - sq[[0, 2]][None], 0).mean() / 0.5 ** 2
    assert hinge[1].item() == pytest.approx(expected, rel=1e-5)
    # ascending the loss (a sign step) lowers the hinge of the violated input
    stepped = (x + 0.05 * grad.sign()).clamp(0, 1)
    assert attack.hinge(identity_net(), stepped, refs)[1] < hinge[1]


def test_margin_makes_a_barely_satisfied_constraint_active(plane):
    # at (0.5, 0.5) the tightest pair gives (0.03^2 - 0.18) / 0.5^2 = -0.72 (in eta^2 units)
    x, y = torch.tensor([[0.5, 0.5]]), torch.tensor([0])
    for margin, positive in [(0.6, False), (0.8, True)]:
        attack = SW20Attack(plane, ["conv4"], 0.1, {"conv4": 0.5}, metric="l2", guides=2, k=2, margin=margin)
        _, hinge, grad = hinge_and_grad(attack, x, y)
        assert (hinge[0] > 0) == positive and (grad.abs().sum() > 0) == positive


# ---------------------------------------------------------------- against brute force on a random bank
def geometry(a: np.ndarray, metric: str) -> np.ndarray:
    a = a.astype(np.float64)
    return a / np.linalg.norm(a, axis=-1, keepdims=True) if metric == "cosine" else a


@pytest.fixture
def random_bank():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 12)
    features = {layer: rng.normal(size=(48, 6)).astype(np.float32) for layer in LAYERS}
    x = torch.from_numpy(rng.uniform(size=(20, 6)).astype(np.float32))
    return FeatureBank(features, labels), x, torch.from_numpy(rng.integers(0, 4, 20))


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_references_and_hinge_match_brute_force(metric, random_bank):
    bank, x, y = random_bank
    m, k, margin, eta = 3, 5, 0.3, {"conv3": 0.7, "conv4": 1.3}
    attack = SW20Attack(bank, LAYERS, 0.1, eta, metric=metric, guides=m, k=k, margin=margin)
    refs = attack.prepare(identity_net(), x, y)
    hinge = attack.hinge(identity_net(), x, refs).numpy()
    q = geometry(x.numpy(), metric)
    sq = {layer: ((q[:, None] - geometry(bank.features[layer], metric)[None]) ** 2).sum(-1) for layer in LAYERS}
    expected_hinge = np.zeros(len(y))
    for b in range(len(y)):
        # target and guides: DkNN-Atk's rule at the first layer
        first = sq[LAYERS[0]][b]
        mean_dist = [np.inf if c == y[b] else np.sort(np.sqrt(first[bank.labels == c]))[:m].mean() for c in range(4)]
        target = int(np.argmin(mean_dist))
        members = np.flatnonzero(bank.labels == target)
        guides = members[np.argsort(first[members])[:m]]
        assert refs.target[b] == target
        np.testing.assert_array_equal(np.sort(refs.guides[b]), np.sort(guides))
        for layer in LAYERS:
            d = sq[layer][b]
            outside = np.flatnonzero(bank.labels != target)
            others = outside[np.argsort(d[outside])[:k]]
            assert not np.any(bank.labels[refs.others[layer][b]] == target)
            np.testing.assert_array_equal(np.sort(refs.others[layer][b]), np.sort(others))
            assert np.all(np.diff(d[refs.others[layer][b]]) >= -1e-6)     # nearest first
            pairs = (d[guides][:, None] - d[others][None]) / eta[layer] ** 2 + margin
            expected_hinge[b] += np.maximum(pairs, 0).mean()
    assert expected_hinge.min() > 0   # the check must see active pairs
    np.testing.assert_allclose(hinge, expected_hinge, rtol=1e-4, atol=1e-6)


def test_other_neighbours_excludes_the_given_class_and_keeps_the_k_nearest(random_bank):
    bank, x, _ = random_bank
    exclude = np.arange(len(x)) % 4
    dist, idx = other_neighbours(bank, "conv4", "l2", x.numpy(), exclude, 7)
    sq = ((x.numpy()[:, None].astype(np.float64) - bank.features["conv4"][None]) ** 2).sum(-1)
    for b in range(len(x)):
        outside = np.flatnonzero(bank.labels != exclude[b])
        expected = outside[np.argsort(sq[b, outside])[:7]]
        np.testing.assert_array_equal(idx[b], expected)
        np.testing.assert_allclose(dist[b], sq[b, expected], rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------- parameters
@pytest.mark.parametrize("change, name", [
    ({"layers": []}, "layers"),
    ({"layers": ["conv2"]}, "conv2"),
    ({"metric": "manhattan"}, "metric"),
    ({"guides": 0}, "guides"),
    ({"guides": 61}, "guides"),
    ({"k": 0}, "k = 0"),
    ({"k": 61}, "k = 61"),
    ({"margin": -0.1}, "margin"),
    ({"thresholds": {"conv3": 0.3}}, "thresholds"),
    ({"thresholds": {"conv4": 0.0}}, "thresholds"),
    ({"eps": 2.0}, "eps"),
])
def test_rejects_bad_parameters(change, name, digits_bank):
    kwargs = {"layers": ["conv4"], "eps": EPS, "thresholds": {"conv4": 0.1}, **change}
    with pytest.raises(ParamError, match=name):
        SW20Attack(digits_bank, **kwargs)
