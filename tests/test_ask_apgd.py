"""ASK-APGD: the non-saturating margin, APGD's schedule, restarts that stop on fooled images."""
from __future__ import annotations

import pytest
import torch

from askknn.attacks.ask import ASKAttack
from askknn.attacks.ask_apgd import ASKAPGDAttack, apgd_checkpoints, halves
from askknn.dknn import DeepKNN
from askknn.shared import ParamError


def input_gradient(attack, model, x, y) -> torch.Tensor:
    context = attack.prepare(model, x, y)
    x = x.clone().requires_grad_(True)
    grad, = torch.autograd.grad(attack.loss(model, x, y, context).sum(), x)
    return grad.flatten(1).abs().amax(1)


def test_the_margin_has_a_gradient_where_the_ask_loss_saturates(digits_model, digits_bank, digits_eval):
    x, y = digits_eval
    tau = 1e-4   # the true class's soft-kNN probability rounds to 1 in float32
    ask = ASKAttack(digits_bank, ["conv4"], 0.1, "cosine", tau=tau)
    apgd = ASKAPGDAttack(digits_bank, ["conv4"], 0.1, k=5, tau=tau)
    saturated = input_gradient(ask, digits_model, x, y) < 1e-6
    assert saturated.sum() >= 10, "the fixture should hold saturating images at this tau"
    assert (input_gradient(apgd, digits_model, x[saturated], y[saturated]) > 1e-3).all()


@pytest.mark.parametrize("restart", ["best", "random"])
def test_lowers_the_dknn_accuracy_at_least_as_much_as_ask_atk(restart, digits_model, digits_bank, digits_eval):
    x, y = digits_eval
    dknn = DeepKNN(digits_bank, ["conv4"], 5, "cosine")
    ask = ASKAttack(digits_bank, ["conv4"], 0.1, "cosine", tau=0.03, step_size=0.025, seed=0)
    apgd = ASKAPGDAttack(digits_bank, ["conv4"], 0.1, k=5, tau=0.03, steps=10, restarts=2, restart=restart, seed=0)
    accuracy = {name: (dknn.predict_inputs(digits_model, a(digits_model, x, y)) == y.numpy()).mean()
                for name, a in (("ask", ask), ("apgd", apgd))}
    assert accuracy["apgd"] <= accuracy["ask"] - 0.05, accuracy


def test_checkpoints_follow_croce_and_hein():
    assert apgd_checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert apgd_checkpoints(10) == [3, 5, 6, 7, 8, 9, 10]


def test_the_step_halves_where_croce_and_hein_halve_it():
    """Three of four steps raised the objective (condition 1 keeps the step) and the best objective
    stayed put: the step halves only if the previous checkpoint kept it (condition 2)."""
    raised, best = torch.tensor([3, 3, 1]), torch.tensor([0.5, 0.5, 0.9])
    halved_then = torch.tensor([True, False, True])
    assert halves(raised, 4, 0.75, halved_then, best, best.clone()).tolist() == [False, True, True]
    assert halves(raised, 4, 0.75, halved_then, best, best - 0.1).tolist() == [False, False, True]


def test_restarts_attack_only_the_images_the_dknn_still_gets_right(digits_model, digits_bank, digits_eval):
    x, y = digits_eval
    attack = ASKAPGDAttack(digits_bank, ["conv4"], 0.1, k=5, tau=0.03, steps=5, restarts=3, seed=0)
    sizes, run = [], attack.apgd

    def counted(model, x_run, y_run, context, start=None):
        sizes.append(len(y_run))
        return run(model, x_run, y_run, context, start)

    attack.apgd = counted
    x_adv = attack(digits_model, x, y)
    wrong = (attack.judge.predict_inputs(digits_model, x_adv) != y.numpy()).sum()
    assert sizes[0] == len(y) and all(later < sizes[0] for later in sizes[1:])
    assert wrong >= len(y) - sizes[-1], "an image fooled by an earlier run keeps its adversarial point"


def test_a_run_costs_its_steps_in_forward_passes(digits_model, digits_bank, digits_eval):
    x, y = digits_eval
    attack = ASKAPGDAttack(digits_bank, ["conv4"], 0.1, k=5, steps=7, restarts=1, seed=0)
    calls, loss = [], attack.loss
    attack.loss = lambda *args: calls.append(1) or loss(*args)
    attack(digits_model, x[:10], y[:10])
    assert len(calls) == 7


@pytest.mark.parametrize("kwargs, message", [
    ({"restart": "sometimes"}, "restart = 'sometimes' is not allowed"),
    ({"restarts": 0}, "restarts = 0 must be at least 1"),
    ({"rho": 1.5}, "rho = 1.5 must be in"),
    ({"k": 61}, r"dknn.k = 61 is larger"),
])
def test_bad_parameters_fail_at_once(digits_bank, kwargs, message):
    with pytest.raises(ParamError, match=message):
        ASKAPGDAttack(digits_bank, ["conv4"], 0.1, **{"k": 5, **kwargs})
