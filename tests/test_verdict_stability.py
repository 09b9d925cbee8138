"""benchmarks/verdict_stability.py: two runs' verdicts matched claim by claim, changes and reversals
counted."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def test_verdict_stability_counts_changes_and_reversals():
    import verdict_stability
    first = [{"claim": c, "source": "s", "verdict": v} for c, v in
             (("a", "holds"), ("b", "not resolved at n = 10"), ("c", "reversed"), ("d", "holds"))]
    second = [{"claim": c, "source": "s", "verdict": v} for c, v in
              (("d", "holds"), ("a", "reversed"), ("b", "holds"), ("c", "not resolved at n = 10"))]
    rows = verdict_stability.compare(first, second)
    assert [r["changed"] for r in rows] == [True, True, True, False]
    assert [r["reversed"] for r in rows] == [True, False, False, False]


def test_each_changed_verdict_is_shown_with_the_p_values_it_was_read_from():
    import verdict_stability
    first = [{"claim": "a", "source": "s", "verdict": "holds", "p_value": 0.01, "p_holm": 0.04}]
    second = [{"claim": "a", "source": "s", "verdict": "not resolved at n = 9", "p_value": 0.03, "p_holm": 0.06}]
    row, = verdict_stability.compare(first, second)
    assert (row["p_first"], row["p_second"]) == ("0.04", "0.06")
    within = {"claim": "w", "source": "s", "verdict": "holds", "ci95": [0.0, 0.01]}
    assert verdict_stability.compare([within], [within])[0]["p_first"] == "-"


def directional(only_a: int, only_b: int, verdict: str, family: str = "f", n: int = 800) -> dict:
    return {"claim": f"{only_a}-{only_b}", "source": family, "family": family, "direction": "higher", "n": n,
            "only_a": only_a, "only_b": only_b, "verdict": verdict}


def test_expected_changes_from_image_sampling_are_near_zero_far_from_the_level_and_near_half_at_it():
    import verdict_stability
    clear = directional(150, 10, "holds")   # p ~ 1e-32: a fresh sample never doubts it
    assert verdict_stability.expected_changes([clear]) < 0.01
    # 40 against 22 discordant images: p = 0.03, just below the level; fresh samples land on either
    # side about equally often, so two of them disagree about half the time
    edge = directional(40, 22, "holds")
    assert 0.4 < verdict_stability.expected_changes([edge]) <= 0.5
    # with four times the images, that same effect is resolved almost always
    assert verdict_stability.expected_changes([edge], scale=4) < 0.05
    # Holm: beside five clear claims the edge claim has the family's largest p-value, so its adjusted
    # p-value is its own and it changes as often as alone (the clear ones add nothing)
    family = [edge] + [directional(150 + i, 10, "holds") for i in range(5)]
    assert abs(verdict_stability.expected_changes(family) - verdict_stability.expected_changes([edge])) < 0.05
    # equivalence verdicts are not counted
    assert verdict_stability.expected_changes([{"claim": "w", "source": "s", "verdict": "holds"}]) == 0


def test_the_vectorised_holm_matches_statsmodels_row_by_row():
    import numpy as np
    from statsmodels.stats.multitest import multipletests
    import verdict_stability
    p = np.random.default_rng(0).uniform(0, 0.2, (20, 6))
    p[0, :2] = 0.01   # ties
    expected = np.array([multipletests(row, method="holm")[1] for row in p])
    assert np.allclose(verdict_stability.holm_rows(p), expected)


def test_the_vectorised_mcnemar_p_value_is_the_reports_exact_test():
    import numpy as np
    import verdict_stability
    from askknn.stats import paired_test
    only_a, only_b = np.array([0, 3, 12, 7, 40]), np.array([0, 9, 2, 7, 22])
    expected = [paired_test(np.array([1] * a + [0] * b, bool), np.array([0] * a + [1] * b, bool))["p_value"]
                if a + b else 1.0 for a, b in zip(only_a, only_b)]
    assert np.allclose(verdict_stability.mcnemar_p_values(only_a, only_a + only_b), expected)


def test_the_second_run_is_saved_and_compared_again_without_a_rerun(tmp_path, monkeypatch):
    """The second run (replaced by a stand-in writing its verdicts and archive) is kept where `--keep`
    asks; its verdicts and provenance are saved, read back by `--second`, which refuses once the
    committed verdicts are no longer those it was compared with, and names what is missing."""
    import json
    import subprocess
    import tarfile

    import pytest

    import verdict_stability as vs
    real_run = subprocess.run
    seeds = vs.yaml.safe_load((ROOT / "params.yaml").read_text())["seeds"]
    second = [{"claim": "x", "verdict": "holds"}]

    def stand_in(command, cwd=None, **kwargs):
        if command[0] == "git":
            return real_run(command, cwd=cwd, **kwargs)
        assert "--archive" in command and f"seeds={[seed + 3 for seed in seeds]}" in command
        (Path(cwd) / "metrics" / "verdicts.json").write_text(json.dumps({"verdicts": second}))
        archive = Path(command[command.index("--archive") + 1])
        archive.parent.mkdir(parents=True)
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(Path(cwd) / "metrics" / "verdicts.json", arcname="./metrics/verdicts.json")

    monkeypatch.setattr(vs.subprocess, "run", stand_in)
    work, kept, saved = tmp_path / "work", tmp_path / "kept" / "run.tar.gz", tmp_path / "rerun.json"
    work.mkdir()
    first = [{"claim": "x", "verdict": "not resolved at n = 5"}]
    run = {"commit": "abc1234", "preset": "fashion_mnist", "offset": 3, "seeds": seeds,
           "first_verdicts": vs.verdicts_digest(first)}
    assert vs.rerun(run, work, kept) == second and tarfile.is_tarfile(kept)
    vs.save_rerun(run, second, saved)
    assert vs.saved_rerun(first, saved) == (second, run)
    with pytest.raises(SystemExit, match="changed since the run"):
        vs.saved_rerun([{"claim": "x", "verdict": "holds"}], saved)
    saved.write_text(json.dumps({"verdicts": second}))
    with pytest.raises(SystemExit, match="holds no second run"):
        vs.saved_rerun(first, saved)
    saved.write_text("not json")
    with pytest.raises(SystemExit, match="is not JSON"):
        vs.saved_rerun(first, saved)
    saved.unlink()
    with pytest.raises(SystemExit, match="missing"):
        vs.saved_rerun(first, saved)


def test_options_of_a_rerun_are_refused_where_nothing_is_rerun():
    """--offset and --keep only shape a re-run: with --second or --expected-only they are an error,
    not silently ignored."""
    import subprocess
    for options in (["--second", "--offset", "3"], ["--expected-only", "--keep", "x.tar.gz"],
                    ["--second", "--expected-only"]):
        done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "verdict_stability.py"), *options],
                              capture_output=True, text=True)
        assert done.returncode == 2 and "verdict_stability.py: error:" in done.stderr, (options, done.stderr)


def pooled(differences: list[float], only_a: int, only_b: int, claim: str = "c") -> dict:
    return {"claim": claim, "source": "s", "family": "f", "direction": "higher", "n": 800,
            "seeds": len(differences), "seed_differences": differences, "only_a": only_a, "only_b": only_b}


def test_seed_effects_separate_training_spread_from_image_noise():
    import numpy as np
    import verdict_stability as vs
    same = pooled([0.04, 0.04, 0.04], 210, 114)   # both runs alike: no spread beyond the images
    spread = pooled([0.0, 0.04, 0.08], 210, 114, "d")
    unpaired = {"claim": "u", "source": "s", "verdict": "holds"}   # not pooled over seeds: left out
    effects = vs.seed_effects([same, spread, unpaired], [same, spread, unpaired])
    assert [e["claim"] for e in effects] == ["c", "d"]
    rate = 324 / 2400
    sigma = ((rate - 0.04 ** 2) / 800) ** 0.5
    assert abs(effects[0]["mu"] - 0.04) < 1e-12 and effects[0]["tau"] == 0
    assert abs(effects[0]["sigma"] - sigma) < 1e-9
    # six differences 0, .04, .08 (twice): their variance .0064 / 5 = .00128, less the mean image variance
    image_variance = np.mean([(rate - d ** 2) / 800 for d in (0.0, 0.04, 0.08)])
    assert abs(effects[1]["tau"] - (0.00128 - image_variance) ** 0.5) < 1e-9


def test_the_vectorised_pooled_rule_is_the_reports():
    import numpy as np
    import verdict_stability as vs
    from askknn.stats import verdict_word
    cases = [(0.01, [0.02, 0.03, 0.01]), (0.01, [0.02, -0.01, 0.03]), (0.01, [-0.02, -0.03, -0.01]),
             (0.2, [0.02, 0.03, 0.01]), (0.01, [0.0, 0.02, 0.01]), (0.01, [0.02])]
    for p, differences in cases:
        d = np.array([differences])
        mean = float(d.mean())
        test = {"n": 800, "difference": mean, "seeds": len(differences),
                "seeds_agree": bool(all(np.sign(x) == np.sign(mean) != 0 for x in differences))}
        expected = verdict_word(test, "higher", p).split(" at n")[0]
        assert vs.pooled_words("higher", np.array([p]), d)[0] == expected, (p, differences)


def test_the_vectorised_seed_test_is_the_reports():
    import numpy as np
    import verdict_stability as vs
    from askknn.stats import seed_test
    rows = np.array([[0.02, 0.03, 0.01], [0.02, -0.01, 0.03], [0.01, 0.01, 0.01], [0.0, 0.0, 0.0], [0.2, 0.01, 0.02]])
    assert vs.seed_t_p_values(rows) == pytest.approx([seed_test(r) for r in rows])


def test_projected_changes_grow_with_training_variance_and_shrink_with_images():
    import verdict_stability as vs
    effect = {"claim": "c", "family": "f", "direction": "higher", "mu": 0.03, "tau": 0.0, "sigma": 0.011,
              "per_seed": 800, "rate": 0.1}
    # 3 points against 1.1 of image noise per seed, no training spread: five seeds say holds every time;
    # three leave the t-test over seeds (2 degrees of freedom) near the level
    assert vs.projected_changes_by_family([effect], seeds=5)["f"] < 0.05
    assert vs.projected_changes_by_family([effect], seeds=3)["f"] > 0.3
    # the same mean with 3 points of spread between seeds: a seed in six goes the other way, and the
    # t-test and the seed-agreement rule then leave it unresolved often
    assert vs.projected_changes_by_family([{**effect, "tau": 0.03}], seeds=5)["f"] > 0.3
    # an effect at the edge of the level settles with more images
    edge = {**effect, "mu": 0.012}
    assert vs.projected_changes_by_family([edge], seeds=5, scale=4)["f"] < \
        vs.projected_changes_by_family([edge], seeds=5)["f"] - 0.2
