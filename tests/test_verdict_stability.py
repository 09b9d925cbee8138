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
