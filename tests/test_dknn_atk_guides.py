"""benchmarks/dknn_atk_guides.py follows the tuner's protocol for every m and tests each m against
the first on the same held-out images."""
from __future__ import annotations

import sys
from pathlib import Path

from askknn.experiments import tune_attack

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import dknn_atk_guides  # noqa: E402
from test_protocol import make_suite  # noqa: E402


def test_each_m_is_tuned_as_the_tuning_stage_tunes_and_tested_against_the_first(digits, digits_model, digits_bank):
    suite = make_suite(digits, digits_model, digits_bank)
    rows = dknn_atk_guides.compare_guides(suite, [(["conv4"], "cosine"), (["conv3"], "l2")], ["k", 3], 26)
    assert [(r["layers"], r["metric"], r["guides"]) for r in rows] == [
        ("conv4", "cosine", "k"), ("conv4", "cosine", 3), ("conv3", "l2", "k"), ("conv3", "l2", 3)]
    assert suite.cfg["dknn_atk"]["guides"] == "k"   # the suite's own setting is back
    record = tune_attack(suite, "dknn_atk", ["conv4"], "cosine", 26)   # the tuning stage's choice at m = K
    assert rows[0]["chosen"] == record["chosen"]
    assert rows[0]["accuracy"] == min(g["dknn_accuracy"] for g in record["grid"])
    assert rows[0]["test"] is None and rows[2]["test"] is None
    for row in (rows[1], rows[3]):
        assert row["test"]["family_size"] == 2 and row["test"]["p_holm"] >= row["test"]["p_value"]
        assert abs(row["test"]["difference"] - (row["accuracy"] - rows[rows.index(row) - 1]["accuracy"])) < 1e-12
    info = {"date": "today", "preset": "digits", "method": "at", "seed": 0, "eps": 26, "k": 5, "n": rows[0]["n"],
            "guides": ["k", 3], "tests": 2, "rows": rows}
    table = [line for line in dknn_atk_guides.render(info).splitlines() if line.startswith("| conv")]
    assert len(table) == 4 and table[1].count("points") == 1 and "points" not in table[0]
