"""SW20 (Sitawarin & Wagner 2020) in fixed-budget l_inf form. The tests shared with the other
baseline attacks (l_inf ball, pixel range, eps 0, model mode) run through test_baseline_attacks.py."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from askknn.attacks.sw20 import SW20Attack
from askknn.bank import FeatureBank
from askknn.dknn import accuracy
from askknn.models import BlockNet
from askknn.shared import ParamError

LAYERS = ["conv3", "conv4"]
EPS = 0.1


def identity_net() -> BlockNet:
    """Features = the input itself at every layer."""
    return BlockNet([nn.Identity() for _ in range(5)], nn.Identity()).eval()


# ---------------------------------------------------------------- on the digits model
def test_lowers_dknn_accuracy_well_below_clean_and_below_noise(digits_model, digits_bank, digits_eval, digits_dknn):
    # measured (conv4, cosine, eps 0.1, 20 sign steps, m = K = 5, reselect 4): clean 1.00, random sign
    # noise 0.96, SW20 0.60 (0.58 with seed 1)
    x, y = digits_eval
    torch.manual_seed(0)
    noisy = (x + EPS * torch.sign(torch.randn_like(x))).clamp(0, 1)
    attacked = SW20Attack(digits_bank, ["conv4"], EPS, guides=5, k=5, seed=0)(digits_model, x, y)
    clean_acc, noisy_acc, attacked_acc = (accuracy(digits_dknn.predict_inputs(digits_model, v), y)
                                          for v in (x, noisy, attacked))
    assert clean_acc >= 0.9
    assert attacked_acc <= clean_acc - 0.3
    assert noisy_acc >= attacked_acc + 0.25


# ---------------------------------------------------------------- the objective on hand-made points
@pytest.fixture
def plane():
    """Three classes of three 2-D points; the identity net makes the DkNN a plain kNN on them.
    Squared distances from (0.5, 0.5) in the comments."""
    points = np.array([[0.6, 0.5], [0.5, 0.3], [0.9, 0.9],       # class 0: 0.01, 0.04, 0.32
                       [0.5, 0.4], [1.0, 0.5], [0.0, 0.0],       # class 1: 0.01, 0.25, 0.5
                       [0.2, 0.5], [0.5, 0.85], [0.0, 1.0]],     # class 2: 0.09, 0.1225, 0.5
                      dtype=np.float32)
    return FeatureBank({"conv4": points}, np.repeat([0, 1, 2], 3))


def objective(attack, x, y):
    """References chosen at x, and the hinge there."""
    features = identity_net().features(x, attack.layers)
    refs = attack.select(features, y, attack.judge.nearest(features))
    return refs, attack.hinge(features, refs)


def test_objective_at_a_point_computed_by_hand(plane):
    # x = (0.5, 0.5), true class 0, m = 4 (2 guides per side), K = 3, l2.
    # Target: mean squared distance of each wrong class's 2 nearest points: class 1 (0.01 + 0.25) / 2
    # = 0.13, class 2 (0.09 + 0.1225) / 2 = 0.10625 -> class 2 (mean plain distances would pick
    # class 1: (0.1 + 0.5) / 2 = 0.3 < (0.3 + 0.35) / 2 = 0.325).
    # Threshold: the 3 nearest of all are 0.01, 0.01, 0.04 -> t = 0.04.
    # Hinge: true guides (s = -1) at 0.01, 0.04; target guides (s = +1) at 0.09, 0.1225:
    #   relu(0.04 - 0.01 + 1e-5) + relu(0.04 - 0.04 + 1e-5) + relu(0.09 - 0.04 + 1e-5) + relu(0.1225 - 0.04 + 1e-5)
    #   = 0.03001 + 0.00001 + 0.05001 + 0.08251 = 0.16254
    attack = SW20Attack(plane, ["conv4"], 0.1, metric="l2", guides=4, k=3)
    x, y = torch.tensor([[0.5, 0.5]]), torch.tensor([0])
    refs, hinge = objective(attack, x, y)
    assert refs.target.tolist() == [2]
    assert refs.guides.tolist() == [[0, 1, 6, 7]]
    assert refs.signs.tolist() == [-1, -1, 1, 1]
    assert refs.layers["conv4"][2].item() == pytest.approx(0.04, abs=1e-6)
    assert hinge.item() == pytest.approx(0.16254, abs=1e-6)


def test_a_sign_step_on_the_loss_lowers_the_hinge(plane):
    attack = SW20Attack(plane, ["conv4"], 0.1, metric="l2", guides=4, k=3)
    x, y = torch.tensor([[0.5, 0.5], [0.45, 0.6]]), torch.tensor([0, 1])
    refs, hinge = objective(attack, x, y)
    x_grad = x.clone().requires_grad_(True)
    grad, = torch.autograd.grad(attack.loss(identity_net(), x_grad, y, refs).sum(), x_grad)
    stepped = identity_net().features(x + 0.01 * grad.sign(), ["conv4"])
    assert torch.all(attack.hinge(stepped, refs) < hinge)


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
    half, k = 3, 5
    attack = SW20Attack(bank, LAYERS, 0.1, metric=metric, guides=2 * half + 1, k=k)   # odd m: m // 2 each
    refs, hinge = objective(attack, x, y)
    q = geometry(x.numpy(), metric)
    sq = {layer: ((q[:, None] - geometry(bank.features[layer], metric)[None]) ** 2).sum(-1) for layer in LAYERS}
    signs = np.repeat([-1.0, 1.0], half)
    expected = np.zeros(len(y))
    for b in range(len(y)):
        first = sq[LAYERS[0]][b]
        nearest = [np.flatnonzero(bank.labels == c)[np.argsort(first[bank.labels == c])[:half]] for c in range(4)]
        mean_sq = [np.inf if c == y[b] else first[nearest[c]].mean() for c in range(4)]
        target = int(np.argmin(mean_sq))
        guides = np.concatenate([nearest[int(y[b])], nearest[target]])
        assert refs.target[b] == target
        np.testing.assert_array_equal(refs.guides[b], guides)
        for layer in LAYERS:
            d = sq[layer][b]
            threshold = np.sort(d)[k - 1]
            assert refs.layers[layer][2][b].item() == pytest.approx(threshold, rel=1e-4, abs=1e-6)
            expected[b] += np.maximum(signs * (d[guides] - threshold) + 1e-5, 0).sum()
    assert expected.min() > 1e-3   # the check must see active guides
    np.testing.assert_allclose(hinge.numpy(), expected, rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------- re-selection and the kept point
class Recorder:
    """Wraps a method of an attack, recording the first layer's features of each call (with the
    identity net: the point itself)."""

    def __init__(self, attack, name: str, result=None):
        self.calls, self.result, self.method = [], result, getattr(attack, name)
        setattr(attack, name, self)

    def __call__(self, features, *args):
        self.calls.append(next(iter(features.values())).detach().clone())
        return self.method(features, *args) if self.result is None else self.result(len(self.calls) - 1, *args)


def plane_attack(plane, steps: int, reselect: int) -> SW20Attack:
    return SW20Attack(plane, ["conv4"], 0.2, metric="l2", guides=4, k=3, reselect=reselect, steps=steps,
                      step_size=0.05, random_start=False)


@pytest.mark.parametrize("reselect, at_steps", [(1, [0, 1, 2, 3, 4, 5]), (2, [0, 2, 4]), (4, [0, 4]), (6, [0])])
def test_guides_and_thresholds_are_chosen_again_at_the_current_iterate(plane, reselect, at_steps):
    attack = plane_attack(plane, 6, reselect)
    select, hinge = Recorder(attack, "select"), Recorder(attack, "hinge")
    x, y = torch.tensor([[0.5, 0.5], [0.45, 0.6]]), torch.tensor([0, 1])
    attack(identity_net(), x, y)
    assert len(hinge.calls) == 7                             # the 6 iterates stepped from and the last
    assert len(select.calls) == len(at_steps)
    for call, t in zip(select.calls, at_steps):
        torch.testing.assert_close(call, hinge.calls[t])     # chosen at the iterate of step t
    assert torch.equal(select.calls[0], x)                   # no random start: step 0 is x
    if len(at_steps) > 1:
        assert not torch.equal(select.calls[1], x)


def test_keeps_the_first_point_the_dknn_misclassifies_even_if_later_ones_are_not(plane):
    # judged at steps 0, 2, 4 and the last (6); the judge is fooled only at step 2, by the first input
    attack = plane_attack(plane, 6, 2)
    x, y = torch.tensor([[0.5, 0.5], [0.45, 0.6]]), torch.tensor([0, 1])
    judged = []

    def votes_of(labels):
        judged.append(labels)
        return None, np.array([1 if len(judged) == 2 else 0, 1])
    attack.judge.votes_of = votes_of
    hinge = Recorder(attack, "hinge")   # with the identity net, each step's point
    out = attack(identity_net(), x, y)
    assert len(judged) == 4
    torch.testing.assert_close(out[0], hinge.calls[2][0])
    assert not torch.equal(out[0], hinge.calls[6][0])


def test_one_search_per_judgement_serves_the_thresholds_too(plane):
    # judged at steps 0, 2, 4 and the last (6), re-selected at 0, 2 and 4: the thresholds' K-th
    # distance comes from the judge's own search of the same point, so 4 searches, not 7
    attack = plane_attack(plane, 6, 2)
    searches, search = [], plane.search
    plane.search = lambda *args: searches.append(args) or search(*args)
    select = Recorder(attack, "select")
    attack(identity_net(), torch.tensor([[0.5, 0.5], [0.45, 0.6]]), torch.tensor([0, 1]))
    assert len(select.calls) == 3 and len(searches) == 4


def test_keeps_the_lowest_objective_since_the_last_reselection_when_never_fooled(plane):
    # an offset per evaluation leaves the gradients alone and sets the order of the objective's
    # values: step 1 the lowest of all, but before the last re-selection (step 4); after it, step 4
    # below step 5 below the last iterate; so the point of step 4 is kept
    attack = plane_attack(plane, 6, 2)
    offsets = torch.tensor([0.0, -100.0, 0.0, 0.0, 0.0, 50.0, 100.0])
    hinge = Recorder(attack, "hinge")
    real = hinge.method
    hinge.method = lambda features, refs: real(features, refs) + offsets[len(hinge.calls) - 1]
    x, y = torch.tensor([[0.5, 0.5], [0.45, 0.6]]), torch.tensor([0, 1])
    attack.judge.votes_of = lambda labels: (None, np.array([0, 1]))   # never fooled
    out = attack(identity_net(), x, y)
    torch.testing.assert_close(out, hinge.calls[4])
    assert not torch.equal(out, hinge.calls[6])


# ---------------------------------------------------------------- parameters
@pytest.mark.parametrize("change, name", [
    ({"layers": []}, "layers"),
    ({"layers": ["conv2"]}, "conv2"),
    ({"metric": "manhattan"}, "metric"),
    ({"guides": 1}, "guides"),
    ({"guides": 122}, "guides"),
    ({"k": 0}, "k = 0"),
    ({"k": 61}, "k = 61"),
    ({"reselect": 0}, "reselect"),
    ({"eps": 2.0}, "eps"),
])
def test_rejects_bad_parameters(change, name, digits_bank):
    kwargs = {"layers": ["conv4"], "eps": EPS, **change}
    with pytest.raises(ParamError, match=name):
        SW20Attack(digits_bank, **kwargs)
