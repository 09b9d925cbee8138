"""End to end: `dvc repro` on the tiny preset in a fresh git repository, then `dvc exp run -S eps=...`
must re-run only the attack stages and the report, and `dvc metrics diff` must read the metrics.
Then `dvc status` after touching files: each stage depends on what it uses, nothing more."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COPIED = ["askknn", "stages", "presets", "dvc.yaml", "params.yaml", "pyproject.toml", ".gitignore", ".dvcignore"]
# check_params validates eps first (seconds; its outputs do not change, so nothing after it re-runs for it)
EPS_STAGES = re.compile(r"^(check_params|tune@|attack@|eps_sweep@|ask_appendix@|evaluate_trained@|evaluate_defense@|"
                        r"report$)")


def run(cmd: list[str], cwd: Path, stderr: bool = True) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.com",
           "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.com",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(cwd)}
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done.stdout + done.stderr if stderr else done.stdout


def ran_stages(log: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", log))


def stale_stages(repo: Path) -> set[str]:
    return set(json.loads(run(["dvc", "status", "--json"], repo, stderr=False) or "{}"))


def stale_after_edit(repo: Path, path: str) -> set[str]:
    """The stages `dvc status` marks after a harmless edit of `path` (undone afterwards)."""
    original = (repo / path).read_text()
    (repo / path).write_text(original + "\n# touched\n")
    try:
        return stale_stages(repo)
    finally:
        (repo / path).write_text(original)


@pytest.mark.slow
def test_repro_then_eps_experiment(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in COPIED:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            shutil.copy(src, repo / name)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["preset"] = "tiny"
    params["seeds"] = [0, 1]   # two training seeds: the pooled verdicts, at less cost than the default's three
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q"], repo)
    run(["dvc", "init", "-q"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "tiny"], repo)

    first = ran_stages(run(["dvc", "repro"], repo))
    assert {"prepare", "train@at-0", "train@askdef-1", "bank@at-1", "evaluate_clean@at-0", "evaluate_trained@atsnn-1",
            "report"} <= first
    results = (repo / "reports" / "results.md").read_text()
    assert "Table 1" in results and "Table 5" in results
    assert "not resolved at n = " in results or "**holds**" in results   # paired verdicts
    table1 = next(part for part in re.split(r"(?m)^## ", results) if part.startswith("Table 1"))
    assert re.search(r"\| conv4 +\| \d+\.\d \[\d+\.\d, \d+\.\d\]", table1), "Table 1 without intervals"
    assert "worst case, all 5 attacks" in table1 and "ASK-APGD lower than ASK-Atk" in table1
    assert "## Calibrated DkNN" in results and "## Table 3 under stronger attacks" in results
    cell = json.loads((repo / "metrics" / "attack" / "ask_apgd_cosine.json").read_text())["layer_sets"]["conv4"]
    assert cell["n"] == 40 and 0 <= cell["credibility"]["auroc"] <= 1
    worst = json.loads((repo / "metrics" / "defense" / "askdef.json").read_text())["worst_case"]["conv4"]
    assert worst["n"] == 40 and set(worst["cascade"]) == {"dknn_atk", "sw20", "advknn"}
    for figure in ("training_curves", "figure1_left_attacks", "figure4", "defense_curves"):
        assert (repo / "reports" / "figures" / f"{figure}.png").stat().st_size > 1000
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "results"], repo)

    # an experiment on one target (running every eps stage would double the test's time): it runs
    # just what the target needs, and `dvc status` then lists every stage that reads eps, no other
    second = ran_stages(run(["dvc", "exp", "run", "-S", "eps=16", "attack@ask-cosine"], repo))
    assert second == {"check_params", "tune@at", "attack@ask-cosine"}, sorted(second)
    stale = stale_stages(repo)
    assert "evaluate_defense@askdef" in stale and "report" in stale
    assert all(EPS_STAGES.match(stage) for stage in stale), f"eps marks unrelated stages: {sorted(stale)}"
    diff = run(["dvc", "metrics", "diff", "--all"], repo)
    assert "metrics/attack/ask_cosine.json" in diff
    run(["git", "checkout", "--", "."], repo)   # back to the committed results (eps 24)
    run(["dvc", "checkout", "-q"], repo)

    before = stale_stages(repo)   # expected empty; the checks below are about what an edit adds to it
    assert not {s for s in before if s.startswith("train@") or s == "report"}, sorted(before)
    stale = stale_after_edit(repo, "askknn/attacks/advknn.py") - before
    assert "attack@advknn-cosine" in stale and not {s for s in stale if s.startswith("train@")}, sorted(stale)
    assert stale_after_edit(repo, "askknn/report/common.py") - before == {"report"}
    preset = yaml.safe_load((repo / "presets" / "tiny.yaml").read_text())
    preset["data"]["eval_size"] = 50    # the bank and training splits are drawn first: unchanged
    (repo / "presets" / "tiny.yaml").write_text(yaml.safe_dump(preset, sort_keys=False))
    run(["dvc", "repro", "prepare"], repo)
    stale = stale_stages(repo) - before
    assert "evaluate_clean@at-0" in stale and not {s for s in stale if s.startswith("train@")}, sorted(stale)
