"""How stable are the report's verdicts? Re-runs a preset with other training and attack seeds and
compares the two metrics/verdicts.json (not a stage: it runs the whole pipeline once more).

    python benchmarks/verdict_stability.py                   # disjoint seeds: 0, 1, 2 -> 3, 4, 5
    python benchmarks/verdict_stability.py --offset 7

The committed verdicts (metrics/verdicts.json, from `dvc repro`) are the first set. The second comes
from a copy of the project's tracked files in a temporary folder, where every training seed of
params.yaml's `seeds` and the preset's attacks.seed are raised by `--offset` (by default the number
of seeds, so the two sets of training seeds are disjoint) and every stage runs in one process
(benchmarks/gpu_run.py).
Writes reports/verdict_stability.md: how many verdicts changed, which, and whether any reversed
(holds <-> reversed).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from askknn.io import write_text  # noqa: E402
from askknn.params import preset_config  # noqa: E402
from askknn.stats import ALPHA  # noqa: E402


def word(verdict: str) -> str:
    return verdict.split(" at n")[0]


def evidence(verdict: dict) -> str:
    """The p-value the verdict was read from (Holm-adjusted where it was), or '-' (an equivalence)."""
    p = verdict.get("p_holm", verdict.get("p_value"))
    return "-" if p is None else f"{p:.2g}"


def compare(first: list[dict], second: list[dict]) -> list[dict]:
    """Per claim (matched by its text and source): both verdicts, and whether they differ."""
    other = {(v["claim"], v["source"]): v for v in second}
    rows = []
    for v in first:
        w = other.get((v["claim"], v["source"]))
        if w is None:
            raise SystemExit(f"the second run has no verdict for {v['claim']!r} ({v['source']})")
        a, b = word(v["verdict"]), word(w["verdict"])
        rows.append({"claim": v["claim"], "source": v["source"], "first": a, "second": b, "changed": a != b,
                     "reversed": {a, b} == {"holds", "reversed"}, "p_first": evidence(v), "p_second": evidence(w)})
    return rows


def rerun(preset: str, offset: int, folder: Path) -> list[dict]:
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, check=True, capture_output=True, text=True).stdout.split()
    for name in files:
        source = ROOT / name
        if source.is_file():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(source.read_bytes())
    config_path = folder / "presets" / f"{preset}.yaml"
    config = yaml.safe_load(config_path.read_text()) or {}
    seed = preset_config(preset, ROOT)["attacks"]["seed"]   # the preset's own, or base.yaml's
    config.setdefault("attacks", {})["seed"] = seed + offset
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    top = yaml.safe_load((ROOT / "params.yaml").read_text())
    seeds = [s + offset for s in top["seeds"]]
    subprocess.run([sys.executable, "benchmarks/gpu_run.py", "run", preset, "-S", f"eps={top['eps']}",
                    "-S", f"seeds={seeds}", "--archive", str(folder / "out" / "run.tar.gz")], cwd=folder, check=True)
    return json.loads((folder / "metrics" / "verdicts.json").read_text())["verdicts"]


def write_report(rows: list[dict], preset: str, offset: int, seeds: list[int], commit: str) -> None:
    changed = [r for r in rows if r["changed"]]
    reversed_ = [r for r in rows if r["reversed"]]
    lines = ["# Verdict stability\n",
             f"Written by `python benchmarks/verdict_stability.py --offset {offset}` at commit {commit}: the "
             f"`{preset}` preset run again with training seeds {[s + offset for s in seeds]} instead of {seeds} and "
             f"attacks.seed raised by {offset} (every model retrained, every attack redrawn), its verdicts compared "
             f"with that commit's `metrics/verdicts.json`.\n",
             f"- verdicts compared: {len(rows)}",
             f"- changed: {len(changed)} ({100 * len(changed) / len(rows):.1f}%)",
             f"- reversed (holds <-> reversed): {len(reversed_)}\n"]
    if changed:
        lines += [f"Each verdict with the p-value it was read from (Holm-adjusted; level {ALPHA}): a change between "
                  "`holds` and `not resolved` with p-values either side of the level is a claim near the boundary.\n",
                  "| claim | source | committed | p | rerun | p |", "|---|---|---|---|---|---|"]
        lines += [f"| {r['claim']} | {r['source']} | {r['first']} | {r['p_first']} | {r['second']} | {r['p_second']} |"
                  for r in changed]
    write_text(ROOT / "reports" / "verdict_stability.md", "\n".join(lines) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--offset", type=int, help="added to every training seed and to attacks.seed "
                        "(default: the number of training seeds, so the two sets are disjoint)")
    args = parser.parse_args()
    top = yaml.safe_load((ROOT / "params.yaml").read_text())
    preset, seeds = top["preset"], top["seeds"]
    offset = len(seeds) if args.offset is None else args.offset
    first = json.loads((ROOT / "metrics" / "verdicts.json").read_text())["verdicts"]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, check=True, capture_output=True,
                            text=True).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        second = rerun(preset, offset, Path(tmp))
    write_report(compare(first, second), preset, offset, seeds, commit)
    print((ROOT / "reports" / "verdict_stability.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
