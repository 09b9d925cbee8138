"""The evaluation protocol: tuning never sees evaluation images, each run owns its randomness,
the step follows the budget, X+ survives random negatives, DkNN-Atk's guides follow K, AdvKnn's
block matches its attack's lambda, and the statistics behind the verdicts."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from askknn.io import read_json
from askknn.report.common import per_seed_table
from askknn.knn_blocks import save_blocks, train_knn_block
from askknn.attacks.ask import ASKAttack
from askknn.attacks.dknn_attack import dknn_thresholds
from askknn.attacks.pgd import PGD
from askknn.experiments import AttackSuite, run_seed, tune_attack, worst_case
from askknn.stats import (ALPHA, auroc, claim_verdict, equivalence_verdict, holm, pack, paired_test,
                          pooled_claim_verdict, proportion, seed_mean, tango_interval, unpack)

LAYERS = ["conv3", "conv4"]
CFG = {"batch_size": 50, "steps": 3, "step_fraction": 0.25, "tuning_size": 40, "random_starts": 2, "seed": 0,
       "cuda_graphs": False,
       "ask": {"k_pos": 5, "k_neg": 5, "tau_grid": {"cosine": [0.01, 0.1], "l2": [0.3]}, "omega_grid": [0.5]},
       "dknn_atk": {"guides": "k", "steepness_grid": {"cosine": [4.0], "l2": [1.0]}, "optimizer": "sign",
                    "adam_lr": 0.01, "adam_steps": 10},
       "advknn": {"lam_single": 20.0, "lam_multi": 0.3, "ce_share_grid": [0.0, 0.95]},
       "sw20": {"reselect": 2, "guides_grid": [1, 3, 4]},
       "ask_apgd": {"steps": 4, "restarts": 2, "restart": "best"}}


class HeldOutOnly:
    """Prepared data whose evaluation split cannot be read: the tuner must never ask for it."""

    def __init__(self, digits):
        self.digits = digits

    def split(self, name: str):
        if name == "eval":
            raise AssertionError("the tuner asked for the evaluation images")
        assert name == "val"
        return torch.from_numpy(self.digits.x_test[100:]), torch.from_numpy(self.digits.y_test[100:])


def make_suite(digits, model, bank, k: int = 5) -> AttackSuite:
    """A suite built from objects, without files."""
    held_out = torch.from_numpy(digits.x_test[100:])
    with torch.no_grad():
        features = {layer: f.numpy() for layer, f in model.features(held_out.float() / 255, LAYERS).items()}
    return AttackSuite({"attacks": CFG, "dknn": {"k": k}}, "at", HeldOutOnly(digits), model, bank, features,
                       digits.y_test[100:])


def test_tuning_reads_only_held_out_images_and_fixes_the_choice(digits, digits_model, digits_bank):
    suite = make_suite(digits, digits_model, digits_bank)
    record = tune_attack(suite, "ask", ["conv4"], "cosine", 26)
    assert record["images"] == CFG["tuning_size"] and record["split"].startswith("val")
    assert [g["tau"] for g in record["grid"]] == [0.01, 0.1]
    best = min(record["grid"], key=lambda g: g["dknn_accuracy"])
    assert record["chosen"] == {"tau": best["tau"]}
    assert record["on_grid_edge"] == ["tau"]   # a two-value grid: either choice is on its edge
    assert suite.tuned[("ask", ("conv4",), "cosine")] == record["chosen"]


def test_a_run_without_tuning_names_the_tuning_stage(digits, digits_model, digits_bank):
    from askknn.shared import ParamError

    suite = make_suite(digits, digits_model, digits_bank)
    with pytest.raises(ParamError, match=r"dvc repro tune@at"):
        suite.tuned.of("ask", ["conv4"], "cosine", [{"tau": 0.1}], {})


def test_the_step_is_a_fixed_fraction_of_the_budget(digits, digits_model, digits_bank):
    suite = make_suite(digits, digits_model, digits_bank)
    for eps in (8, 32):
        budget = suite.budget(eps)
        assert budget["step_size"] == pytest.approx(0.25 * eps / 255) and budget["steps"] == CFG["steps"]


def test_each_run_owns_its_generator(digits_model, digits_bank, digits_eval):
    x, y = digits_eval
    make = lambda: ASKAttack(digits_bank, ["conv4"], 0.1, tau=0.03, steps=2, seed=7)   # noqa: E731
    torch.manual_seed(0)
    first = make()(digits_model, x, y)
    torch.manual_seed(123)          # whatever ran before must not matter
    state = torch.get_rng_state()
    second = make()(digits_model, x, y)
    assert torch.equal(first, second)
    assert torch.equal(torch.get_rng_state(), state), "a seeded run must not draw from the global generator"
    other = ASKAttack(digits_bank, ["conv4"], 0.1, tau=0.03, steps=2, seed=8)(digits_model, x, y)
    assert not torch.equal(first, other)
    pgd = [PGD(0.1, steps=2, step_size=0.03, seed=3)(digits_model, x, y) for _ in range(2)]
    assert torch.equal(*pgd)


def test_run_seeds_depend_on_every_part_of_the_setting():
    base = ("at", "ask", ["conv4"], "cosine", 8, [], 0)
    seeds = {run_seed(0, *base), run_seed(1, *base), run_seed(0, "askdef", *base[1:]),
             run_seed(0, *base[:4], 16, *base[5:]), run_seed(0, *base[:6], 1)}
    assert len(seeds) == 5 and run_seed(0, *base) == run_seed(0, *base)


def test_random_negatives_keep_the_true_class_references(digits_model, digits_bank, digits_eval):
    x, y = digits_eval
    with torch.no_grad():
        f = digits_model.features(x, ["conv4"])["conv4"]
    knn = ASKAttack(digits_bank, ["conv4"], 0.1, seed=0)
    rand = ASKAttack(digits_bank, ["conv4"], 0.1, random_negatives=True, seed=0)
    idx_knn, idx_rand = (attack.reference_indices(f, y, "conv4")[0].numpy() for attack in (knn, rand))
    rows = np.arange(len(y))
    np.testing.assert_array_equal(idx_rand[rows, y.numpy()], idx_knn[rows, y.numpy()])   # X+: kNN search
    others = np.ones(idx_knn.shape[:2], bool)
    others[rows, y.numpy()] = False
    assert (idx_rand[others] != idx_knn[others]).mean() > 0.5                           # X-: at random
    assert (digits_bank.labels[idx_rand] == np.arange(10)[None, :, None]).all()          # of the right class
    negatives = np.sort(idx_rand[others][:, :rand.k_neg], 1)
    assert (np.diff(negatives, axis=1) > 0).all()                                       # K- distinct points


def test_dknn_atk_guides_follow_k(digits, digits_model, digits_bank):
    for k in (3, 7):
        suite = make_suite(digits, digits_model, digits_bank, k=k)
        make, _ = suite.factory("dknn_atk", ["conv4"], "cosine", 8, {})
        assert make(0, steepness=4.0).guides == k


def test_advknn_runs_use_the_block_trained_with_their_lambda(digits, digits_model, digits_bank, tmp_path,
                                                             monkeypatch):
    import askknn.experiments as experiments

    blocks = {name: train_knn_block(digits_bank, LAYERS, epochs=1, lam=CFG["advknn"][f"lam_{name}"])[0]
              for name in ("single", "multi")}
    save_blocks(tmp_path / "blocks.safetensors", blocks)
    monkeypatch.setattr(experiments, "advknn_block_path", lambda method, metric, root: tmp_path / "blocks.safetensors")
    suite = make_suite(digits, digits_model, digits_bank)
    for layers, lam in ((["conv4"], 20.0), (LAYERS, 0.3)):
        make, grid = suite.factory("advknn", layers, "cosine", 8, {})
        assert grid == [{"ce_share": 0.0}, {"ce_share": 0.95}]   # the attack's share is tuned, whatever the block's
        assert all(make(0, **h).block.lam == lam and make(0, **h).ce_share == h["ce_share"] for h in grid)


def test_sw20_tunes_its_guides_per_class_from_a_majority_of_k_up(digits, digits_model, digits_bank):
    suite = make_suite(digits, digits_model, digits_bank, k=5)
    make, grid = suite.factory("sw20", ["conv4"], "cosine", 8, {})
    assert grid == [{"half": 3}, {"half": 4}]   # 1 raised to (K + 1) // 2 = 3, and 3 kept once
    assert make(0, half=4).half == 4


def test_thresholds_come_from_held_out_features(digits, digits_model, digits_bank):
    suite = make_suite(digits, digits_model, digits_bank)
    eta = dknn_thresholds(digits_bank, suite.held_out, ["conv4"], 5, "cosine")
    assert 0 < eta["conv4"] < 2


# ---------------------------------------------------------------- statistics
def test_proportion_has_a_wilson_interval():
    p = proportion([1] * 80 + [0] * 20)
    assert p["accuracy"] == 0.8 and p["n"] == 100
    assert p["ci95"] == pytest.approx([0.7112, 0.8666], abs=1e-3)   # Wilson, 80 of 100


def test_mcnemar_uses_only_discordant_pairs():
    a = np.array([1] * 50 + [0] * 10 + [1] * 2 + [0] * 38, bool)
    b = np.array([1] * 50 + [1] * 10 + [0] * 2 + [0] * 38, bool)
    test = paired_test(a, b)
    assert (test["only_a"], test["only_b"]) == (2, 10)
    assert test["p_value"] == pytest.approx(0.0386, abs=1e-3)   # two-sided binomial, 2 of 12


def test_verdicts_read_holds_reversed_or_not_resolved():
    low = np.array([0] * 30 + [1] * 70, bool)
    high = np.ones(100, bool)
    assert claim_verdict(low, high, "lower")["verdict"] == "holds"
    assert claim_verdict(high, low, "lower")["verdict"] == "reversed"
    close = high.copy()
    close[:2] = False
    assert claim_verdict(close, high, "lower")["verdict"] == "not resolved at n = 100"
    assert claim_verdict(high, high, "higher")["verdict"] == "not resolved at n = 100"   # a tie is no win


def seed_pair(n: int, only_a: int, only_b: int = 0, start: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One seed's outcomes of two columns on the same n images: only a right on `only_a` images from
    `start`, only b right on the `only_b` after them, both right on the rest."""
    a, b = np.ones(n, bool), np.ones(n, bool)
    b[start:start + only_a] = False
    a[start + only_a:start + only_a + only_b] = False
    return a, b


def test_the_pooled_test_takes_the_image_as_its_unit():
    # the same images favour a under every seed: 6 images for a, 1 for b, not 18 against 3
    same = [seed_pair(60, 6, 1)] * 3
    v = pooled_claim_verdict(same, "higher")
    assert (v["only_a"], v["only_b"], v["images_favouring"], v["n"], v["seeds"]) == (18, 3, [6, 1], 60, 3)
    assert v["p_images"] == pytest.approx(0.125)   # two-sided sign test, 1 of 7: 2 x 8 / 2^7
    assert v["p_seeds"] == 0.0 and v["p_value"] == pytest.approx(0.125)   # identical seeds: no spread
    assert v["verdict"] == "not resolved at n = 60 images x 3 seeds"
    assert claim_verdict(np.concatenate([p[0] for p in same]), np.concatenate([p[1] for p in same]),
                         "higher")["p_value"] < 0.002   # what counting each image three times would claim


def test_the_pooled_test_needs_the_training_seeds_to_agree_beyond_their_spread():
    # every image favours a, every seed too, but the seeds' differences (+20, +1, +2 points) spread widely
    spread = [seed_pair(400, 80), seed_pair(400, 4, start=100), seed_pair(400, 8, start=200)]
    v = pooled_claim_verdict(spread, "higher")
    assert v["p_images"] < 1e-20 and v["seeds_agree"]
    assert v["p_seeds"] == pytest.approx(0.34, abs=0.01) and v["p_value"] == v["p_seeds"]
    assert v["verdict"].startswith("not resolved")
    # +10, +12, +11 points on different images: both tests reject
    steady = [seed_pair(400, 40), seed_pair(400, 48, start=100), seed_pair(400, 44, start=200)]
    v = pooled_claim_verdict(steady, "higher")
    assert v["p_seeds"] == pytest.approx(0.0028, abs=0.0003) and v["verdict"] == "holds"
    assert pooled_claim_verdict(steady, "lower")["verdict"] == "reversed"
    # five seeds, one the other way: the tests reject, the sign rule does not let it hold
    split = [seed_pair(400, 40, start=40 * i) for i in range(4)] + [seed_pair(400, 0, 1, start=300)]
    v = pooled_claim_verdict(split, "higher")
    assert v["p_value"] < ALPHA and not v["seeds_agree"]
    assert v["verdict"].startswith("not resolved") and "same non-zero sign" in v["verdict"]
    assert holm([{**v, "claim": "higher"}])[0]["verdict"].startswith("not resolved")   # Holm keeps the rule
    with pytest.raises(ValueError, match="same images"):
        pooled_claim_verdict([seed_pair(400, 40), seed_pair(300, 40)], "higher")


def test_one_training_run_is_never_a_verdict_on_the_training_method():
    single = pooled_claim_verdict([seed_pair(80, 30)], "higher")
    assert single["p_value"] < 1e-8 and single["p_seeds"] is None
    assert single["verdict"] == "not resolved at n = 80 (one training run)"
    assert holm([{**single, "claim": "higher"}])[0]["verdict"].endswith("(one training run)")
    weak = pooled_claim_verdict([seed_pair(100, 3)], "higher")   # p >= 0.05: still said to be one run
    assert weak["p_value"] > ALPHA and weak["verdict"] == "not resolved at n = 100 (one training run)"


def test_the_mean_over_seeds_has_a_t_interval():
    m = seed_mean([0.5, 0.6, 0.7])
    assert m["accuracy"] == pytest.approx(0.6) and m["seeds"] == 3
    assert m["ci95"] == pytest.approx([0.6 - 4.3027 * 0.1 / 3 ** 0.5, 0.6 + 4.3027 * 0.1 / 3 ** 0.5], abs=1e-4)
    assert seed_mean([0.5])["ci95"] is None
    assert seed_mean([0.02, 0.0, 0.01])["ci95"][0] == 0.0   # clipped to [0, 1]


def tango_quartic_bounds(n: int, only_a: int, only_b: int) -> tuple[float, float]:
    """The outer real roots of the quartic whose roots hold Tango's bounds (Yang, Sun & Hardin 2013,
    Statistics in Medicine: a non-iterative form), an independent check of the root finder."""
    g, d, s = 1.959963984540054 ** 2, only_a - only_b, only_a + only_b
    coefficients = [n ** 2 * (n / g + 1) ** 2,
                     -n * d * (n / g + 1) * (4 * n / g + 1),
                     2 * n * d ** 2 * (3 * n / g + 2) / g - n ** 2 * (s / g + 1),
                     n * d * (2 * s / g + 1) - d ** 3 * (4 * n / g + 1) / g,
                     d ** 2 * (d ** 2 / g - s) / g]
    real = sorted(r.real for r in np.roots(coefficients) if abs(r.imag) < 1e-9)
    return real[0], real[-1]


@pytest.mark.parametrize("n, only_a, only_b", [(160, 40, 20), (41, 5, 0), (800, 30, 12), (300, 7, 19)])
def test_tangos_interval_solves_its_score_equation(n, only_a, only_b):
    assert tango_interval(only_a, only_b, n) == pytest.approx(tango_quartic_bounds(n, only_a, only_b), abs=1e-9)


def test_tangos_interval_covers_and_never_collapses():
    z2 = 1.959963984540054 ** 2
    assert tango_interval(0, 0, 50) == pytest.approx((-z2 / (50 + z2), z2 / (50 + z2)))   # no disagreement
    assert tango_interval(50, 0, 50) == pytest.approx(((50 - z2) / (50 + z2), 1.0))   # every pair for a
    with pytest.raises(ValueError, match="at least one image"):
        tango_interval(0, 0, 0)
    rng = np.random.default_rng(0)   # 4 points apart, rarely disagreeing: a bootstrap collapses on 0 discordant
    counts = rng.multinomial(50, [0.04, 0.0, 0.96], size=400)
    covered = [lo <= 0.04 <= hi for lo, hi in (tango_interval(a, b, 50) for a, b, _ in counts)]
    assert np.mean(covered) >= 0.95


def test_equivalence_within_a_margin():
    a = np.array([1, 0] * 500, bool)
    assert equivalence_verdict(a, a.copy(), 0.03)["verdict"] == "holds"
    assert equivalence_verdict(a, np.ones(1000, bool), 0.03)["verdict"] == "reversed"
    # never disagreeing on 50 images still leaves +-7 points open
    assert equivalence_verdict(a[:50], a[:50].copy(), 0.03)["verdict"] == "not resolved at n = 50"


def test_outcomes_round_trip_as_text():
    ok = np.array([True, False, True, True])
    assert pack(ok) == "1011" and np.array_equal(unpack(pack(ok)), ok)


class EvaluationToo(HeldOutOnly):
    """Prepared data with an evaluation split: the first 100 test digits."""

    def split(self, name: str):
        if name == "eval":
            return torch.from_numpy(self.digits.x_test[:100]), torch.from_numpy(self.digits.y_test[:100])
        return super().split(name)


def test_the_worst_case_cascade_attacks_only_images_every_earlier_attack_failed_on(digits, digits_model,
                                                                                   digits_bank):
    suite = make_suite(digits, digits_model, digits_bank)
    suite.data = EvaluationToo(digits)
    suite.tuned[("dknn_atk", ("conv4",), "cosine")] = {"steepness": 4.0}
    suite.tuned[("sw20", ("conv4",), "cosine")] = {"half": 3}
    robust = np.arange(60) % 3 != 0          # pretend earlier attacks fooled every third image
    result = worst_case(suite, ["conv4"], "cosine", 26, robust, attacks=("dknn_atk", "sw20"))
    first, second = result["attacks"]["dknn_atk"], result["attacks"]["sw20"]
    assert first["images"] == robust.sum() and second["images"] == robust.sum() - first["fooled"]
    assert not (result["robust"] & ~robust).any(), "a fooled image never becomes robust again"
    assert result["robust"].sum() == robust.sum() - first["fooled"] - second["fooled"]


def test_clean_scores_are_computed_once_per_judge_and_selection(digits, digits_model, digits_bank, monkeypatch):
    import askknn.experiments as experiments
    suite = make_suite(digits, digits_model, digits_bank)
    suite.data = EvaluationToo(digits)
    suite.tuned[("ask", ("conv4",), "cosine")] = {"tau": 0.1}
    calls, scores = [], experiments.clean_scores
    monkeypatch.setattr(experiments, "clean_scores", lambda *a, **k: calls.append(1) or scores(*a, **k))
    first = suite.run("ask", ["conv4"], "cosine", 26, n=50)
    second = suite.run("ask", ["conv4"], "cosine", 26, n=50, start=1)
    suite.run("ask", ["conv4"], "cosine", 26, n=40)
    assert len(calls) == 2
    assert (first["outcomes"]["conv4"]["clean"] == second["outcomes"]["conv4"]["clean"]).all()


def test_credibility_auroc_is_the_mann_whitney_area():
    result = auroc([0.9, 0.8, 0.5], [0.1, 0.85, 0.5])
    # pairs won: 0.9 beats all 3, 0.8 beats 0.1 and 0.5, 0.5 beats 0.1 and ties 0.5 (one half): 6.5 of 9
    assert result["auroc"] == pytest.approx(6.5 / 9)
    assert auroc([1.0], [])["auroc"] is None


class Identity:
    def __call__(self, model, x, y):
        return x.clone()


class Corrector:
    """An 'attack' that replaces every image by a training image of its true class that the judge
    classifies correctly: it turns the judge's mistakes into right answers."""

    def __init__(self, images: dict):
        self.images = images

    def __call__(self, model, x, y):
        return torch.stack([self.images[int(c)] for c in y])


def test_robust_means_correct_clean_and_under_attack(digits, digits_model, digits_dknn):
    from askknn.evaluation import clean_scores, run_attack
    images, labels = torch.from_numpy(digits.x_test[:300]), torch.from_numpy(digits.y_test[:300])
    judges = {"dknn": digits_dknn}
    clean = clean_scores(digits_model, images, labels, judges, 100)["dknn"]["correct"]
    assert 0 < clean.mean() < 1   # some mistakes to be 'fixed'
    same = run_attack(Identity(), digits_model, images, labels, judges, 100)["outcomes"]["dknn"]
    np.testing.assert_array_equal(same["adversarial"], clean)
    train_x = torch.from_numpy(digits.x_train).float() / 255
    right = digits_dknn.predict_inputs(digits_model, train_x) == digits.y_train
    fixes = {c: train_x[np.flatnonzero(right & (digits.y_train == c))[0]] for c in range(10)}
    fixed = run_attack(Corrector(fixes), digits_model, images, labels, judges, 100)["outcomes"]["dknn"]
    # right under attack everywhere, robust only where right clean
    np.testing.assert_array_equal(fixed["adversarial"], clean)


def test_advknn_ascends_away_from_the_true_label(digits, digits_model, digits_bank, digits_eval):
    from askknn.attacks.advknn import AdvKnnAttack
    block, _ = train_knn_block(digits_bank, ["conv4"], k=5, metric="cosine", epochs=1)
    x, y = digits_eval
    _, labels = AdvKnnAttack(block, digits_bank, ["conv4"], 8 / 255).prepare(digits_model, x, y)
    assert torch.equal(labels["conv4"], y)


def test_holm_corrects_within_a_family_and_only_there():
    """Six discordant pairs all one way: exact McNemar p = 2 / 2^6 = 0.031, a hold on its own; three
    such claims in one family have Holm-adjusted p = 3 x 0.031 = 0.094: not resolved. A family of
    one keeps its p-value."""
    from askknn.report import Verdicts
    verdicts = Verdicts()
    a, b = "000000" + "1" * 20, "111111" + "1" * 20
    text = "".join(verdicts.claim(f"claim {i}", "paper Table 9; a group", a, b, "lower") for i in range(3))
    text += verdicts.claim("alone", "paper Table 6", a, b, "lower") + verdicts.tally()
    final = verdicts.finalize(text)
    assert [r["verdict"] for r in verdicts.records] == ["not resolved at n = 26"] * 3 + ["holds"]
    assert verdicts.records[0]["p_value"] == pytest.approx(0.03125)
    assert verdicts.records[0]["p_holm"] == pytest.approx(0.09375)
    assert "Holm-adjusted p = 0.094 (3 tests in the family)" in final
    assert "Of these 4 tests: 1 hold, 0 reversed, 3 not resolved." in final and "\x00" not in final


def test_a_section_whose_files_are_missing_names_them_and_drops_its_verdicts(tmp_path):
    """A run cut short (a GPU machine's deadline) still gets a report: the section without its
    metrics says which file it lacks, and the claims it made before failing are not counted."""
    from askknn.report import Verdicts, render
    verdicts = Verdicts()

    def half_done(params, verdicts):
        verdicts.claim("made before the failure", "paper Table 1", "0" * 10, "1" * 10, "lower")
        return (tmp_path / "metrics/attack/ask_cosine.json").read_text()

    note = render(half_done, params=None, verdicts=verdicts)
    assert "Not run (half_done)" in note and "metrics/attack/ask_cosine.json` is missing" in note
    assert verdicts.records == []


ROOT = Path(__file__).resolve().parents[1]


def test_every_verdict_of_the_report_is_a_claim_of_the_claims_table_and_every_claim_is_tested():
    """The committed report's verdicts (metrics/verdicts.json) come from askknn/report/claims.py
    and nothing else; a claim there that no section tests would be a dead entry."""
    from askknn.report import claims
    sources = {c.source for c in claims.every()}
    made = {v["source"].split("; ", 1)[-1] for v in read_json(ROOT / "metrics/verdicts.json")["verdicts"]}
    assert made == sources


def test_no_verdict_is_made_twice():
    """Claims are unique, and the AT model's ASK-APGD verdicts are Table 1's alone: the section of
    the stronger attacks on the trained models reads the same runs for it, and a second verdict on
    them would only enlarge its Holm family."""
    from askknn.report import claims
    from askknn.report.common import METHOD_NAMES
    made = [v["claim"] for v in read_json(ROOT / "metrics/verdicts.json")["verdicts"]]
    assert len(made) == len(set(made))
    at_prefix = claims.STRONGER_ON_DEFENSES.what(model=METHOD_NAMES["at"], layers="").rsplit(",", 1)[0]
    assert not [claim for claim in made if claim.startswith(at_prefix)]
    assert any(claim.startswith(at_prefix.replace(METHOD_NAMES["at"], METHOD_NAMES["askdef"])) for claim in made)


def test_the_worst_case_of_a_trained_model_starts_from_its_table3_outcomes(tmp_path):
    """evaluate_defense's first attack is read from evaluate_trained's file under the named project
    root (from any working directory); the AT model's stronger attacks are Table 1's instead."""
    from askknn.io import write_json
    from askknn.studies import table3_ask_outcomes
    stored = {part: {"ask": {"conv4": bits}, "pgd": {"0": bits}} for part, bits in (("robust", "01"), ("clean", "11"))}
    write_json(tmp_path / "outcomes/trained/askdef_seed2.json", stored)
    assert table3_ask_outcomes(tmp_path, "askdef", 2) == {"conv4": {"robust": "01", "clean": "11"}}
    assert table3_ask_outcomes(tmp_path, "at", 2) is None


def test_an_edge_choice_says_where_a_stronger_value_may_lie_and_names_a_limit_of_the_attack():
    from askknn.report.tuning import edge_direction, edge_lead
    grid = [{"steepness": a, "dknn_accuracy": acc} for a, acc in ((0.25, 0.30), (1.0, 0.30), (4.0, 0.40))]
    low = {"on_grid_edge": ["steepness"], "grid": grid, "chosen": {"steepness": 0.25}}
    assert edge_direction(low, {}).startswith("steepness: below the grid (towards 0, the flat sigmoid's limit")
    assert edge_lead(low) == "steepness: 0.0"   # ties its neighbour: the curve is flat there
    high = {**low, "chosen": {"steepness": 4.0}}
    assert edge_direction(high, {}) == "steepness: above the grid"   # no limit that way
    assert edge_direction({**low, "on_grid_edge": []}, {}) == "no"


def test_an_edge_choice_at_the_end_of_its_range_is_not_an_open_edge():
    from askknn.report.tuning import edge_direction, open_edges, range_ends
    ends = range_ends({"dknn": {"k": 7}})
    grid = [{"ce_share": s, "dknn_accuracy": acc} for s, acc in ((0.0, 0.5), (0.99, 0.3), (1.0, 0.2))]
    at_end = {"on_grid_edge": ["ce_share"], "grid": grid, "chosen": {"ce_share": 1.0}}
    assert open_edges(at_end, ends) == [] and "nothing lies above" in edge_direction(at_end, ends)
    short = {"on_grid_edge": ["ce_share"], "grid": grid[:2], "chosen": {"ce_share": 0.99}}
    assert open_edges(short, ends) == ["ce_share"]
    assert edge_direction(short, ends) == "ce_share: above the grid (towards 1, the CE term alone)"
    guides = [{"half": h, "dknn_accuracy": acc} for h, acc in ((4, 0.3), (10, 0.4))]   # 4: a majority of K = 7
    fewest = {"on_grid_edge": ["half"], "grid": guides, "chosen": {"half": 4}}
    assert open_edges(fewest, ends) == [] and "nothing lies below" in edge_direction(fewest, ends)
    assert open_edges(fewest, range_ends({"dknn": {"k": 5}})) == ["half"]   # 3 would be allowed
    flat = {"on_grid_edge": ["steepness"], "grid": [{"steepness": 0.0, "dknn_accuracy": 0.2},
                                                    {"steepness": 1.0, "dknn_accuracy": 0.3}],
            "chosen": {"steepness": 0.0}}
    assert open_edges(flat, ends) == [] and "the flat sigmoid's limit" in edge_direction(flat, ends)


def test_a_mean_over_seeds_is_shown_only_for_several_seeds():
    cells = {"conv4": {"accuracy": 0.5, "ci95": [0.4, 0.6]}}
    one = per_seed_table({}, {"at": {0: (cells, None)}}, ["conv4"], str)
    assert list(one.index) == ["AT, seed 0"]
    two = per_seed_table({}, {"at": {0: (cells, None), 1: (cells, None)}}, ["conv4"], str)
    assert list(two.index) == ["AT, seed 0", "AT, seed 1", "AT, mean of 2 seeds"]


def test_appendix_tables_use_table_size_and_curves_subset_size():
    from askknn.appendix import EXPERIMENTS

    class RecordingSuite:
        def __init__(self):
            self.sizes = set()

        def run(self, attack, layers, metric, eps, n, **options):
            self.sizes.add(n)

        def dknn(self, layers, metric, k=None):
            return "judge"

    p = {"eps": 8, "dknn": {"layer_sets": [["conv3"], ["conv4"]]},
         "experiments": {"table_size": 80, "subset_size": 30, "sweep_layers": ["conv4"], "k_values": [1, 3],
                         "tau_values": [0.1], "k_pos_values": [1], "k_neg_values": [1, 3]}}
    sizes = {}
    for name, experiment in EXPERIMENTS.items():
        suite = RecordingSuite()
        experiment(suite, p)
        sizes[name] = suite.sizes
    assert sizes == {"targeted": {80}, "random_negatives": {80}, "cross_layers": {80}, "k_pos_neg": {80},
                     "tau_k": {30}, "attacker_k": {30}}


def test_a_rate_over_no_image_is_a_dash_not_an_error():
    from askknn.report.common import rate_with_ci
    assert rate_with_ci(0.0, 0) == "- (n = 0)"   # e.g. a success rate where the clean DkNN got no image right
    assert rate_with_ci(0.5, 4).startswith("50.0 [")
