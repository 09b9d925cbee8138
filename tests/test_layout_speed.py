"""benchmarks/layout_speed.py runs end to end at toy sizes: both layouts of every measured model
compute the same features, and every model and step gets its row."""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import layout_speed  # noqa: E402


def test_the_layout_benchmark_times_both_layouts_of_the_same_model(tmp_path):
    layout_speed.main(["--repeats", "1", "--inner", "1", "--batch", "2", "--out", str(tmp_path)])
    info = json.loads((tmp_path / "layout_speed.json").read_text())
    assert {(r["model"], r["step"]) for r in info["rows"]} == {
        (model, step) for model, *_ in layout_speed.SETTINGS for step in ("attack step (conv4)", "training step")}
    for row in info["rows"]:
        assert row["max_feature_diff"] < 1e-4
        assert row["NCHW_ms"] > 0 and row["channels_last_ms"] > 0
    assert info["malloc"] == layout_speed.malloc_settings()
    text = (tmp_path / "layout_speed.md").read_text()
    assert f"malloc: {info['malloc']}." in text
    assert text.count("| small_cnn | 1.0 | 2 |") == 2 and text.count("| vgg16_bn | 0.25 | 2 |") == 2
