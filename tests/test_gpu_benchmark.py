"""benchmarks/gpu_benchmark.py runs end to end on the CPU at toy sizes (the GPU run has one call to
get right): every measurement is written, with the configuration it read from the merged presets."""
from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu_benchmark  # noqa: E402


def test_the_benchmark_measures_everything_on_the_cpu_at_toy_sizes(tmp_path):
    assert gpu_benchmark.main(["--device", "cpu", "--batches", "1", "--repeats", "1", "--batch-size", "2",
                               "--bank-size", "60", "--out", str(tmp_path), "--no-compile"]) == 0
    text = (tmp_path / "gpu_benchmark.md").read_text()
    assert "training batch 2, attack batch 2, bank 60" in text
    for row in ("AT epoch, vgg16_bn, fp32", "AT epoch, vgg16_bn, bf16", "ASK-Atk batch, cosine", "ASK-Atk batch, l2",
                "once a batch; the steps (random start included), l2",
                "exact torch search", "start-up of one stage's process",
                "ASK-Atk batch, cosine, steps replayed as CUDA graphs",
                "ASK-Atk batch, l2, steps replayed as CUDA graphs"):
        assert re.search(rf"\| [^|]*{re.escape(row)}[^|]*\| \d", text), row
    assert re.search(r"bf16 epoch / fp32 epoch: \d+\.\d\d", text)
    assert re.search(r"differs from the eager one's, l2 \| 0 of 6,144 ", text)   # the stand-in computes the same
    assert "torch.profiler" in (tmp_path / "gpu_profile.md").read_text()
