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
