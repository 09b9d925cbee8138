"""benchmarks/verdict_stability.py: two runs' verdicts matched claim by claim, changes and reversals
counted."""
from __future__ import annotations

import sys
from pathlib import Path

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


def test_the_second_run_is_kept_where_asked(tmp_path, monkeypatch):
    """`--keep`: the second run's archive is copied out of the temporary folder, whose verdicts are
    still the ones compared (the run itself is replaced by a stand-in writing both files)."""
    import json
    import subprocess

    import verdict_stability as vs
    real_run = subprocess.run
    seeds = vs.yaml.safe_load((ROOT / "params.yaml").read_text())["seeds"]

    def stand_in(command, cwd=None, **kwargs):
        if command[0] == "git":
            return real_run(command, cwd=cwd, **kwargs)
        assert "--archive" in command and f"seeds={[seed + 3 for seed in seeds]}" in command
        archive = Path(command[command.index("--archive") + 1])
        archive.parent.mkdir(parents=True)
        archive.write_bytes(b"the second run")
        (Path(cwd) / "metrics" / "verdicts.json").write_text(json.dumps({"verdicts": [{"claim": "x"}]}))

    monkeypatch.setattr(vs.subprocess, "run", stand_in)
    work, kept = tmp_path / "work", tmp_path / "kept" / "run.tar.gz"
    work.mkdir()
    assert vs.rerun("fashion_mnist", 3, work, kept) == [{"claim": "x"}]
    assert kept.read_bytes() == b"the second run"
