"""The training loop (AT, ASK-Def, AT+SNN), its checkpoints, and the SNN loss."""
import copy
import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from askknn.data import PreparedData, make_splits, save_prepared, to_float
from askknn.defenses import extra_term
from askknn.losses import ask_loss, similarity, snn_loss
from askknn.models import create_model
from askknn.params import load_params, preset_config
from askknn.shared import ParamError
from askknn.training import TrainConfig, autocast, effective_precision, evaluate, train_model

ROOT = Path(__file__).resolve().parents[1]
TOL_LOSS, TOL_COS = 0.02, 0.9   # bf16 autocast against fp32 (see test_bf16_autocast_agrees_with_fp32)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, digits):
    folder = tmp_path_factory.mktemp("prepared")
    splits = make_splits(digits.y_train, digits.y_test, val_size=100, bank_size=200, eval_size=50,
                         train_size=300, seed=0)
    save_prepared(folder, digits, splits)
    return PreparedData(folder)


@pytest.fixture(scope="module")
def params():
    return preset_config("tiny", ROOT)


def config(epochs=2):
    return TrainConfig(epochs=epochs, batch_size=100, lr=0.05, eps=16, pgd_steps=2, pgd_step_size=8,
                       val_pgd_steps=1, milestones=[1])


def trained(prepared, cfg, checkpoint, term=None):
    torch.manual_seed(0)
    model = create_model("small_cnn", in_channels=1)
    train_model(model, prepared, cfg, checkpoint, term, log=lambda _: None)
    return model.state_dict()


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_resumed_training_ends_with_the_weights_of_an_uninterrupted_run(prepared, tmp_path):
    straight = trained(prepared, config(2), tmp_path / "straight.pt")
    trained(prepared, config(1), tmp_path / "resumed.pt")          # "interrupted" after epoch 1
    resumed = trained(prepared, config(2), tmp_path / "resumed.pt")
    assert_same_weights(straight, resumed)
    state = torch.load(tmp_path / "resumed.pt", weights_only=True)
    assert state["epoch"] == 2 and len(state["history"]) == 2


def test_askdef_with_lambda_zero_is_at(prepared, params, tmp_path):
    p = copy.deepcopy(params)
    p["methods"]["askdef"]["lam"] = 0
    cfg = config(1)
    assert extra_term("askdef", p, prepared, cfg) is None
    assert_same_weights(trained(prepared, cfg, tmp_path / "at.pt", extra_term("at", p, prepared, cfg)),
                        trained(prepared, cfg, tmp_path / "askdef.pt", extra_term("askdef", p, prepared, cfg)))


def test_askdef_reference_labels_are_aligned_with_their_images(prepared, params):
    term = extra_term("askdef", params, prepared, config())
    model = create_model("small_cnn", in_channels=1).eval()
    torch.manual_seed(0)
    refs, labels = term.reference_batch(model, "cpu")
    n = len(refs) // 2
    x_train, y_train = prepared.split("train")
    flat = to_float(x_train).flatten(1)
    for image, label in zip(refs[:n], labels[:n]):
        match = (flat == image.flatten()).all(1).nonzero()
        assert len(match) and (y_train[match.squeeze(1)] == label).all()
    assert torch.equal(labels[:n], labels[n:])
    assert (refs[n:] - refs[:n]).abs().max() <= term.g1.eps + 1e-6
    assert torch.bincount(labels[:n]).tolist() == [params["methods"]["askdef"]["refs_per_class"]] * 10


def test_askdef_draws_distinct_reference_images_of_each_class(prepared, params):
    term = extra_term("askdef", params, prepared, config())
    k = params["methods"]["askdef"]["refs_per_class"]
    torch.manual_seed(0)
    picks = torch.stack([term.reference_picks("cpu").view(10, k) for _ in range(200)])
    assert (picks.sort(-1).values.diff(dim=-1) > 0).all()
    assert (term.y_train[picks] == torch.arange(10)[:, None]).all()


def fixed_batch(method, params, prepared):
    """The method's config and loss term, a fresh seeded model and the first 100 training images."""
    cfg = config()
    term = extra_term(method, params, prepared, cfg)
    torch.manual_seed(0)
    model = create_model("small_cnn", in_channels=1)
    x_u8, y = prepared.split("train")
    return cfg, term, model, to_float(x_u8[:100]), y[:100]


@pytest.mark.parametrize("method", ["at", "askdef", "atsnn"])
def test_one_training_step_lowers_the_loss_on_a_fixed_batch(prepared, params, method):
    cfg, term, model, x, y = fixed_batch(method, params, prepared)
    attack = cfg.pgd()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)

    def objective():
        torch.manual_seed(1)   # same random start and reference batch every time
        x_adv = attack(model, x, y)
        model.train()
        logits, feats = model.forward_with_features(x_adv, getattr(term, "layers", []))
        loss = F.cross_entropy(logits, y)
        return loss + term(model, x, y, x_adv, feats) if term is not None else loss

    before = objective()
    opt.zero_grad()
    before.backward()
    opt.step()
    assert objective().item() < before.item()


class ReadsItsClass(torch.nn.Module):
    """Predicts the class c written into an image as the pixel value 20 c."""
    def forward(self, x):
        return -(x[:, 0, 0, 0, None] * 255 / 20 - torch.arange(10)).abs()


def test_the_held_out_check_counts_an_image_only_if_correct_clean_and_under_attack():
    y = torch.arange(10)
    images = (20 * torch.where(y % 2 == 0, y, (y + 1) % 10)).to(torch.uint8).view(10, 1, 1, 1).expand(10, 1, 4, 4)

    def writes_the_true_class(model, x, t):   # an "attack" under which every image is right
        return (20 * t / 255).view(-1, 1, 1, 1).expand_as(x).clone()

    assert evaluate(ReadsItsClass(), images, y).keys() == {"loss", "accuracy"}
    scores = evaluate(ReadsItsClass(), images, y, writes_the_true_class)
    assert scores["accuracy"] == 0.5 and scores["robust_accuracy"] == 0.5   # not 1.0


def test_the_held_out_pgd_steps_a_quarter_of_the_budget_whatever_the_training_step():
    cfg = TrainConfig(epochs=1, eps=4, pgd_steps=1, pgd_step_size=5, val_pgd_steps=10)
    check = cfg.held_out_pgd()
    assert (check.eps, check.steps, check.step_size) == (4 / 255, 10, 1 / 255)
    assert cfg.pgd().step_size == 5 / 255


def test_the_held_out_pgd_runs_in_eval_mode_even_when_training_attacks_run_in_train_mode():
    cfg = TrainConfig(epochs=1, eps=4, attack_mode="train")
    assert cfg.pgd().train_mode and not cfg.held_out_pgd().train_mode


def test_losses_compute_in_float32_inside_bf16_autocast():
    g = torch.Generator().manual_seed(0)
    f, refs = torch.randn(6, 32, generator=g).bfloat16(), torch.randn(10, 32, generator=g)
    labels, y = torch.arange(10) % 5, torch.arange(6) % 5
    with torch.autocast("cpu", dtype=torch.bfloat16):
        sim = similarity(f, refs, "cosine", 0.01)
        loss = ask_loss(sim, labels.expand(6, -1), y, 5, "defense")
        snn = snn_loss(f, y, 0.1)
    assert sim.dtype == loss.dtype == snn.dtype == torch.float32
    torch.testing.assert_close(sim, similarity(f.float(), refs, "cosine", 0.01), rtol=0, atol=0)
    torch.testing.assert_close(snn, snn_loss(f.float(), y, 0.1), rtol=0, atol=0)


@pytest.mark.parametrize("method", ["at", "askdef", "atsnn"])
def test_bf16_autocast_agrees_with_fp32(prepared, params, method):
    """One training objective (PGD, forward, loss term) and its gradient under bf16 autocast against fp32,
    on the CPU. bf16 keeps 8 bits of mantissa (relative rounding 2^-9, about 2e-3, per operation);
    through the network's five blocks that leaves the loss within TOL_LOSS and the gradient's direction
    within cosine TOL_COS of fp32's (measured on this CPU: loss within 0.05-0.25%, cosine 0.95-0.96).
    The sign steps of PGD flip on near-zero gradients, so the adversarial inputs, and with them the
    gradient, differ by more than one forward pass would."""
    cfg, term, model, x, y = fixed_batch(method, params, prepared)
    initial = copy.deepcopy(model.state_dict())

    def objective(precision):
        run_cfg = dataclasses.replace(cfg, precision=precision)
        torch.manual_seed(1)
        model.load_state_dict(initial)   # the same BatchNorm statistics for both (PGD runs in eval mode)
        model.zero_grad()
        with autocast(run_cfg, torch.device("cpu")):
            x_adv = cfg.pgd()(model, x, y)
            model.train()
            logits, feats = model.forward_with_features(x_adv, getattr(term, "layers", []))
            loss = F.cross_entropy(logits.float(), y)
            loss = loss + term(model, x, y, x_adv, feats) if term is not None else loss
        loss.backward()
        return loss.detach(), torch.cat([p.grad.flatten() for p in model.parameters()])

    (loss32, grad32), (loss16, grad16) = objective("fp32"), objective("bf16")
    assert loss16.dtype == torch.float32
    assert abs(loss16 - loss32) <= TOL_LOSS * loss32
    assert F.cosine_similarity(grad16, grad32, dim=0) >= TOL_COS


def test_bf16_training_runs_and_fp32_is_the_default(prepared, tmp_path):
    assert TrainConfig(epochs=1).precision == "fp32"
    assert effective_precision("bf16", "cpu") == "fp32"
    weights = trained(prepared, dataclasses.replace(config(1), precision="bf16"), tmp_path / "bf16.pt")
    assert all(torch.isfinite(v).all() for v in weights.values())


def test_graphed_steps_train_exactly_what_eager_steps_train(prepared, tmp_path, monkeypatch):
    """GraphedStep's bookkeeping on the CPU, with a stand-in for the CUDA graph that runs the captured
    step where the graph would replay it: the warm-up, the input buffers refreshed before every
    replay, a capture per learning rate (milestone at epoch 1) and the smaller last batch run eagerly
    must give the eager run's weights bit for bit."""
    from contextlib import nullcontext

    from askknn import training
    from askknn.cuda_graphs import GraphedStep

    cfg = dataclasses.replace(config(2), batch_size=64)   # 300 images: 4 batches of 64 and one of 44
    eager = trained(prepared, cfg, tmp_path / "eager.pt")
    steps = []

    def graphed(step, lr, *_):
        steps.append(GraphedStep(step, lr, capture=lambda run: run, warm_up=nullcontext))
        return steps[-1]
    monkeypatch.setattr(training, "graphed_or_eager", graphed)
    assert_same_weights(eager, trained(prepared, cfg, tmp_path / "graphed.pt"))
    assert steps[0].eager_steps == GraphedStep.WARMUP
    assert steps[0].captures == [cfg.lr_at(0), cfg.lr_at(1)]


@pytest.mark.parametrize("device, world, graphed, said", [
    ("cuda", 1, True, None),
    ("cpu", 1, False, "ignored on the CPU"),
    ("cuda", 2, False, "ignored under torchrun (2 processes"),
])
def test_cuda_graphs_take_effect_on_cuda_in_one_process_and_say_so_elsewhere(device, world, graphed, said):
    from askknn.cuda_graphs import GraphedStep, graphed_or_eager

    def step(x, y):
        return x

    said_lines = []
    out = graphed_or_eager(step, lambda: 0.1, True, torch.device(device), world, said_lines.append)
    assert isinstance(out, GraphedStep) == graphed and (out is step) != graphed
    assert (said_lines == []) if said is None else (len(said_lines) == 1 and said in said_lines[0])
    assert graphed_or_eager(step, lambda: 0.1, False, torch.device("cuda"), 1, said_lines.append) is step


def test_a_cpu_run_asking_for_cuda_graphs_trains_eagerly_and_says_so(prepared, tmp_path):
    said = []
    torch.manual_seed(0)
    model = create_model("small_cnn", in_channels=1)
    train_model(model, prepared, dataclasses.replace(config(1), cuda_graphs=True), tmp_path / "c.pt", log=said.append)
    assert sum("train.cuda_graphs: ignored on the CPU" in line for line in said) == 1
    assert_same_weights(model.state_dict(), trained(prepared, config(1), tmp_path / "eager.pt"))


def direct_snn(f, y, T, distance):
    out = []
    for i in range(len(f)):
        def d(j):
            if distance == "cosine":
                return 1 - np.dot(f[i], f[j]) / np.linalg.norm(f[i]) / np.linalg.norm(f[j])
            return np.sum((f[i] - f[j]) ** 2)
        same = sum(np.exp(-d(j) / T) for j in range(len(f)) if j != i and y[j] == y[i])
        if same == 0:
            continue
        out.append(-np.log(same / sum(np.exp(-d(k) / T) for k in range(len(f)) if k != i)))
    return np.mean(out)


@pytest.mark.parametrize("distance", ["cosine", "sqeuclidean"])
def test_snn_loss_equals_the_formula_and_never_nan(distance):
    g = torch.Generator().manual_seed(0)
    f = torch.randn(8, 5, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 0, 1, 1, 1, 2, 2, 3])           # class 3 has no partner: left out
    np.testing.assert_allclose(snn_loss(f, y, 0.7, distance).item(), direct_snn(f.numpy(), y.numpy(), 0.7, distance),
                               rtol=1e-10)
    far = (f * 1e3).requires_grad_(True)
    loss = snn_loss(far, y, 1e-3, distance)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(far.grad).all()
    lonely = snn_loss(f, torch.arange(8), 0.7, distance)
    assert lonely.item() == 0 and not torch.isnan(lonely)


@pytest.mark.parametrize("method, key, value, message", [
    ("askdef", "lam", -1, r"methods.askdef.lam = -1 must be a number in \[0"),
    ("askdef", "tau", 0, "methods.askdef.tau = 0 must be positive"),
    ("askdef", "metric", "dot", "methods.askdef.metric = 'dot' is not allowed"),
    ("askdef", "layer", "conv7", "methods.askdef.layer lists 'conv7', a layer the model does not have"),
    ("atsnn", "temperature", -1, "methods.atsnn.temperature = -1 must be positive"),
    ("atsnn", "distance", "manhattan", "methods.atsnn.distance = 'manhattan' is not allowed"),
    ("atsnn", "features", "both", "methods.atsnn.features = 'both' is not allowed; choose one of: adversarial, clean"),
])
def test_bad_defense_parameters_fail_at_once(tmp_path, method, key, value, message):
    shutil.copytree(ROOT / "presets", tmp_path / "presets")
    (tmp_path / "params.yaml").write_text("preset: tiny\neps: 8\nseeds: [0]\n")
    preset = yaml.safe_load((tmp_path / "presets" / "tiny.yaml").read_text())
    preset.setdefault("methods", {}).setdefault(method, {})[key] = value
    (tmp_path / "presets" / "tiny.yaml").write_text(yaml.safe_dump(preset))
    with pytest.raises(ParamError, match=message):
        load_params(tmp_path)


def test_onecycle_rises_linearly_to_the_peak_at_40_percent_then_falls_to_zero_and_scales_with_the_world():
    cfg = TrainConfig(epochs=10, lr=0.2, schedule="onecycle")
    assert cfg.lr_at(0) == 0
    assert cfg.lr_at(2) == pytest.approx(0.1)
    assert cfg.lr_at(4) == pytest.approx(0.2)
    assert cfg.lr_at(7) == pytest.approx(0.1)
    assert cfg.lr_at(9, progress=1.0) == pytest.approx(0.0)
    assert cfg.lr_at(4, world=4) == pytest.approx(0.8)
    step = TrainConfig(epochs=10, lr=0.1, milestones=[5], gamma=0.1)
    assert (step.lr_at(4), step.lr_at(5, progress=0.5)) == (pytest.approx(0.1), pytest.approx(0.01))
