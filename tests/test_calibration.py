"""The committed calibration of the cifar10_cpu preset is what its recorded runs render to: no
number in reports/cifar10_cpu/calibration.md is typed in, and every accuracy carries its interval."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import cifar10_cpu_calibration as calibration  # noqa: E402


def test_the_committed_calibration_is_rendered_from_its_recorded_runs():
    calls = json.loads(calibration.RUNS.read_text())["calls"]
    rendered = calibration.markdown(calls)
    assert rendered == (calibration.OUT / "calibration.md").read_text()
    rows = [line for line in rendered.splitlines() if re.match(r"\| \d", line)]
    assert len(rows) == sum(len(call["rows"]) for call in calls)
    assert all(len(re.findall(r"\d+\.\d \[\d+\.\d, \d+\.\d\]", row)) == 2 for row in rows)   # clean and PGD


def test_every_recorded_call_states_what_its_variants_kept():
    for call in json.loads(calibration.RUNS.read_text())["calls"]:
        assert set(call["protocol"]) == {"eps", "gamma", "drop_fraction", "val_pgd_steps"}
        assert all(row["n"] > 0 for row in call["rows"])
