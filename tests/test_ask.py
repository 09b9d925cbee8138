"""The ASK loss (eq. 2) and ASK-Atk (Algorithm 2)."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from askknn.attacks.ask import ASKAttack
from askknn.attacks.pgd import PGD
from askknn.bank import FeatureBank
from askknn.dknn import DeepKNN
from askknn.losses import ask_loss, similarity
from askknn.models import BlockNet
from askknn.shared import ParamError


def direct_ask(f, refs, labels, y, metric, tau, form, target=None):
    """eq. 2 evaluated literally in float64, one example at a time."""
    out = []
    for b in range(len(f)):
        if metric == "cosine":
            a = [float(np.dot(f[b], r) / np.linalg.norm(f[b]) / np.linalg.norm(r)) / tau for r in refs[b]]
        else:
            a = [-float(np.linalg.norm(f[b] - r)) / tau for r in refs[b]]
        a, lab = np.array(a), labels[b]
        classes = sorted(set(lab)) if target is None else sorted({y[b], target[b]})
        if form == "attack":
            s = {c: np.exp(a[lab == c].mean()) for c in classes}
        else:
            s = {c: np.exp(a[lab == c]).sum() for c in classes}
        out.append(-np.log(s[y[b]] / sum(s.values())))
    return np.array(out)


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    f = torch.randn(4, 6, generator=g, dtype=torch.float64)
    refs = torch.randn(4, 9, 6, generator=g, dtype=torch.float64)
    labels = torch.tensor([[0, 0, 0, 1, 1, 1, 2, 2, 2]] * 4)
    return f, refs, labels, torch.tensor([0, 1, 2, 1]), torch.tensor([1, 2, 0, 0])


@pytest.mark.parametrize("metric", ["cosine", "l2"])
@pytest.mark.parametrize("form", ["attack", "defense"])
@pytest.mark.parametrize("targeted", [False, True])
def test_ask_loss_equals_the_formula_in_float64(batch, metric, form, targeted):
    f, refs, labels, y, target = batch
    target = target if targeted else None
    ours = ask_loss(similarity(f, refs, metric, 0.3), labels, y, 3, form, target)
    expected = direct_ask(f.numpy(), refs.numpy(), labels.numpy(), y.numpy(), metric, 0.3, form,
                          None if target is None else target.numpy())
    np.testing.assert_allclose(ours.numpy(), expected, rtol=1e-10)


@pytest.mark.parametrize("metric", ["cosine", "l2"])
@pytest.mark.parametrize("form", ["attack", "defense"])
def test_ask_loss_passes_gradcheck(batch, metric, form):
    f, refs, labels, y, _ = batch
    f = f.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda f: ask_loss(similarity(f, refs, metric, 0.5), labels, y, 3, form), (f,))


@pytest.mark.parametrize("form", ["attack", "defense"])
def test_ask_loss_stays_finite_for_tiny_tau_and_far_features(batch, form):
    f, refs, labels, y, _ = batch
    f = (f * 1e4).requires_grad_(True)
    loss = ask_loss(similarity(f, refs, "l2", 1e-6), labels, y, 3, form)
    loss.sum().backward()
    assert torch.isfinite(loss).all() and torch.isfinite(f.grad).all()


# ------------------------------------------------------------ a plain kNN on 2-D points
def identity_net() -> BlockNet:
    """Features = the input itself at every layer: DkNN on the points = a plain kNN."""
    return BlockNet([nn.Identity() for _ in range(5)], nn.Identity()).eval()


@pytest.fixture(scope="module")
def points():
    rng = np.random.default_rng(0)
    centres = np.array([[0.3, 0.3], [0.7, 0.3], [0.5, 0.7]])
    bank_x = np.concatenate([c + 0.08 * rng.normal(size=(40, 2)) for c in centres]).clip(0, 1)
    bank = FeatureBank({"conv4": bank_x.astype(np.float32)}, np.repeat(np.arange(3), 40))
    test_y = rng.integers(0, 3, 300)
    test_x = (centres[test_y] + 0.08 * rng.normal(size=(300, 2))).clip(0, 1)
    return bank, torch.tensor(test_x, dtype=torch.float32), torch.tensor(test_y)


def knn_accuracy(bank, x, y):
    return (DeepKNN(bank, ["conv4"], 5, "l2").predict({"conv4": x.numpy()}) == y.numpy()).mean()


def test_ask_atk_flips_a_plain_knn_where_random_noise_of_the_same_size_does_not(points):
    bank, x, y = points
    torch.manual_seed(0)
    eps = 0.15
    attacked = ASKAttack(bank, ["conv4"], eps, "l2", tau=0.03, step_size=0.02)(identity_net(), x, y)
    noisy = (x + eps * torch.sign(torch.randn_like(x))).clamp(0, 1)
    clean_acc, attacked_acc, noisy_acc = (knn_accuracy(bank, v, y) for v in (x, attacked, noisy))
    assert attacked_acc < clean_acc - 0.25
    assert noisy_acc > attacked_acc + 0.12


def test_the_nearest_target_is_the_class_at_the_smallest_mean_distance_not_squared_distance():
    """Class 0's five points lie at distances 1, 1, 1, 1, 10 (mean 2.8, mean square 20.8), class 1's
    all at 3 (mean 3, mean square 9): the nearest class in mean distance is 0."""
    ring = [[1, 0], [0, 1], [-1, 0], [0, -1], [10, 0]]
    far = [[3, 0], [0, 3], [-3, 0], [0, -3], [3 * 0.6, 3 * 0.8]]
    true = [[50, 50]] * 5
    bank = FeatureBank({"conv4": np.array(ring + far + true, dtype=np.float32)}, np.repeat(np.arange(3), 5))
    attack = ASKAttack(bank, ["conv4"], 0.1, "l2", k_pos=5, k_neg=5, target="nearest")
    idx, mean_dist = attack.reference_indices(torch.zeros(1, 2), torch.tensor([2]), "conv4")
    assert mean_dist[0, :2].tolist() == pytest.approx([2.8, 3.0])
    assert attack.choose_target(torch.tensor([2]), mean_dist).tolist() == [0]


def test_targeted_attack_reaches_its_target_more_often_than_the_untargeted_one(points):
    bank, x, y = points
    net = identity_net()
    torch.manual_seed(0)
    targeted = ASKAttack(bank, ["conv4"], 0.2, "l2", tau=0.03, step_size=0.025, target="random")
    context = targeted.prepare(net, x, y)
    target = context[1]
    x_t = targeted.ascend(net, x, y, context)
    x_u = ASKAttack(bank, ["conv4"], 0.2, "l2", tau=0.03, step_size=0.025)(net, x, y)
    dknn = DeepKNN(bank, ["conv4"], 5, "l2")
    hit_t = (dknn.predict({"conv4": x_t.numpy()}) == target.numpy()).mean()
    hit_u = (dknn.predict({"conv4": x_u.numpy()}) == target.numpy()).mean()
    assert hit_t > hit_u + 0.1


@pytest.mark.parametrize("metric", ["cosine", "l2"])
@pytest.mark.parametrize("options", [{}, {"target": "nearest"}, {"random_negatives": True, "k_pos": 3}])
def test_the_torch_search_builds_the_references_from_its_own_tensors_as_faiss_does(points, metric, options,
                                                                                    monkeypatch):
    """The device path: the torch search's references equal faiss's, and once its bank tensors
    exist a batch gathers from them alone (no host array, no numpy search per batch)."""
    bank, x, y = points
    net = identity_net()
    banks = {search: FeatureBank(bank.features, bank.labels, search=search, device="cpu")
             for search in ("faiss", "torch")}
    contexts = {search: ASKAttack(b, ["conv4"], 0.1, metric, seed=0, **options).prepare(net, x, y)
                for search, b in banks.items()}
    (faiss_refs, faiss_target), (torch_refs, torch_target) = contexts["faiss"], contexts["torch"]
    for faiss_part, torch_part in zip(faiss_refs["conv4"], torch_refs["conv4"]):
        if faiss_part is not None:
            torch.testing.assert_close(torch_part, faiss_part, rtol=1e-5, atol=1e-6)
    if options.get("target"):
        assert torch.equal(torch_target, faiss_target)

    def host_array(*args):
        raise AssertionError("the torch search read a host array for a batch")
    monkeypatch.setattr(banks["torch"], "vectors", host_array)
    monkeypatch.setattr(banks["torch"], "search_per_class", host_array)
    again = ASKAttack(banks["torch"], ["conv4"], 0.1, metric, seed=0, **options).prepare(net, x, y)
    torch.testing.assert_close(again[0]["conv4"][0], torch_refs["conv4"][0])


@pytest.mark.parametrize("metric", ["cosine", "l2"])
@pytest.mark.parametrize("target", [None, "nearest", "random"])
def test_the_per_batch_pooling_gives_the_loss_and_gradient_of_the_per_step_formula_bit_for_bit(points, metric,
                                                                                                target):
    """ASK-Atk builds the class pooling once per batch; each step must compute exactly what
    ask_loss computes from the references' labels (the class-mean form: one reference per class)."""
    bank, x, y = points
    net = identity_net()
    attack = ASKAttack(bank, ["conv4"], 0.1, metric, tau=0.05, target=target, seed=0)
    refs, chosen = attack.prepare(net, x, y)
    vectors, _, sq_norms = refs["conv4"]
    found = attack.references("conv4", attack.reference_indices(x, y, "conv4")[0], y, "cpu")
    labels = torch.arange(bank.num_classes).expand(len(y), -1) if metric == "cosine" else found[1]
    x_adv = attack.start(x).requires_grad_(True)
    ours = attack.loss(net, x_adv, y, (refs, chosen))
    sim = similarity(x_adv, vectors, metric, 0.05, True, sq_norms)
    direct = ask_loss(sim, labels, y, bank.num_classes, "attack", chosen)
    assert torch.equal(ours, direct)
    assert torch.equal(torch.autograd.grad(ours.sum(), x_adv)[0], torch.autograd.grad(direct.sum(), x_adv)[0])


# ------------------------------------------------------------ on the trained digits model
def eval_hooks(model):
    modes = []
    for module in model.modules():
        module.register_forward_hook(lambda m, *_: modes.append(m.training))
    return modes


@pytest.mark.parametrize("make", [
    lambda bank: ASKAttack(bank, ["conv3", "conv4"], 0.1, "cosine", tau=0.03),
    lambda bank: ASKAttack(bank, ["conv4"], 0.1, "l2", tau=0.03, target="nearest", random_negatives=True),
    lambda bank: PGD(0.1, steps=5, step_size=0.03, restarts=2),
], ids=["ask-cosine", "ask-l2-targeted-random", "pgd"])
def test_attacks_stay_in_the_ball_and_in_eval_mode(make, digits_model, digits_bank, digits_eval):
    x, y = digits_eval
    attack = make(digits_bank)
    digits_model.train()
    modes = eval_hooks(digits_model)
    x_adv = attack(digits_model, x, y)
    assert digits_model.training, "the model's own mode must be restored"
    digits_model.eval()
    assert modes and not any(modes), "every forward of the attack must run in eval mode"
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    assert (x_adv != x).any()
    attack.eps = 0
    assert torch.equal(attack(digits_model, x, y), x)


def test_ask_atk_lowers_the_dknn_accuracy_of_a_trained_model(digits_model, digits_bank, digits_eval):
    x, y = digits_eval
    dknn = DeepKNN(digits_bank, ["conv3", "conv4"], 5, "cosine")
    clean = (dknn.predict_inputs(digits_model, x) == y.numpy()).mean()
    torch.manual_seed(0)
    x_adv = ASKAttack(digits_bank, ["conv3", "conv4"], 0.1, "cosine", tau=0.03)(digits_model, x, y)
    assert (dknn.predict_inputs(digits_model, x_adv) == y.numpy()).mean() < clean - 0.2


@pytest.mark.parametrize("kwargs, message", [
    ({"layers": ["conv9"]}, "layer 'conv9' is not in the feature bank"),
    ({"k_pos": 61}, r"k_pos \(K\+\) = 61 is larger than a class's share of the bank \(60\)"),
    ({"k_neg": 100}, r"k_neg \(K-\) = 100 is larger"),
    ({"omega": {"conv3": 0.7, "conv4": 0.7}}, "must be non-negative weights summing to 1"),
    ({"tau": -0.1}, "tau = -0.1 must be positive"),
    ({"metric": "dot"}, "metric = 'dot' is not allowed; choose one of: cosine, l2"),
    ({"target": "farthest"}, "target = 'farthest' is not allowed"),
    ({"eps": 2.0}, r"eps = 2.0 must be in \[0, 1\]"),
])
def test_bad_ask_parameters_fail_at_once(digits_bank, kwargs, message):
    args = {"layers": ["conv3", "conv4"], "eps": 0.1, **kwargs}
    with pytest.raises(ParamError, match=message):
        ASKAttack(digits_bank, **args)


@pytest.mark.parametrize("argv, message", [
    (["stages/attack.py", "cw", "cosine"],
     "invalid choice: 'cw' (choose from 'ask', 'advknn', 'dknn_atk', 'ask_apgd', 'sw20')"),
    (["stages/attack.py", "ask", "dot"], "invalid choice: 'dot' (choose from 'cosine', 'l2')"),
    (["stages/train.py", "trades"], "invalid choice: 'trades' (choose from 'at', 'at_wide', 'askdef', 'atsnn')"),
])
def test_unknown_attack_metric_or_method_names_stop_a_stage_at_once(argv, message):
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, *argv], cwd=root, capture_output=True, text=True)
    assert done.returncode == 2 and message in done.stderr


@pytest.mark.parametrize("attack, label", [("dknn_atk", "DkNN-Atk"), ("advknn", "AdvKnn")])
def test_ask_only_options_are_rejected_for_the_baselines(attack, label):
    from askknn.experiments import AttackSuite

    suite = object.__new__(AttackSuite)   # the check comes before any data is touched
    with pytest.raises(ParamError, match=f"options k_pos do not apply to {label}; it takes: none"):
        suite.run(attack, ["conv4"], "cosine", 8, k_pos=3)
