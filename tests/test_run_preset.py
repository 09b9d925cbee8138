"""benchmarks/run_preset.py and time_repro.py: a preset's results land in metrics/<preset>/ and
reports/<preset>/, the default preset's committed state comes back, an interrupted run is counted
whole. DVC is replaced by a stand-in script, so this runs in a second."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import run_preset  # noqa: E402
import time_repro  # noqa: E402

from askknn.shared import ParamError  # noqa: E402

FAKE_DVC = textwrap.dedent("""\
    #!{python}
    import os, pathlib, sys
    if sys.argv[1] == "repro":
        for stage in filter(None, os.environ.get("FAKE_STAGES", "").split(",")):
            print(f"Running stage '{{stage}}':", flush=True)
            pathlib.Path("metrics/data.json").write_text('{{"dataset": "run"}}')
            pathlib.Path("reports/results.md").write_text("run results")
            pathlib.Path("resolved_params.yaml").write_text("# the run's preset, merged")
        sys.exit(int(os.environ.get("FAKE_STATUS", "0")))
    if sys.argv[1] == "checkout":
        sys.exit(int(os.environ.get("FAKE_CHECKOUT_STATUS", "0")))
    """)


# the project's pipeline in small: what a run gathers is what these stages make
PIPELINE = textwrap.dedent("""\
    vars: [params.yaml]
    stages:
      prepare: {cmd: x, metrics: [metrics/data.json]}
      train:
        foreach: ${seeds}
        do: {cmd: x, metrics: ["metrics/train/at_seed${item}.json"], plots: ["plots/train_at_seed${item}.csv"]}
      attack: {cmd: x, metrics: [metrics/attack/ask_cosine.json], outs: [outcomes/attack/ask_cosine.json]}
      report: {cmd: x, outs: [reports/results.md, reports/figures], plots: [reports/plots]}
    """)


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A git repository laid out like this project's, committed as the default preset, with the
    stand-in `dvc` first on PATH."""
    for key in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{key}_NAME", "test")
        monkeypatch.setenv(f"GIT_{key}_EMAIL", "test@example.com")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "dvc").write_text(FAKE_DVC.format(python=sys.executable))
    (bin_dir / "dvc").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{Path(sys.executable).parent}:/usr/bin:/bin")
    root = tmp_path / "repo"
    files = {"params.yaml": "# switches\npreset: fashion_mnist  # the default\neps: 32\nseeds: [0, 1]\n",
             "dvc.yaml": PIPELINE,
             "resolved_params.yaml": "# the default preset, merged\n",
             "dvc.lock": "default lock\n", "presets/fashion_mnist.yaml": "", "presets/cifar10_cpu.yaml": "",
             "metrics/data.json": '{"dataset": "default"}', "metrics/attack/ask_cosine.json": "{}",
             "metrics/train/at_seed0.json": "{}", "metrics/train/at_seed1.json": "{}",
             "outcomes/attack/ask_cosine.json": "{}", "plots/train_at_seed0.csv": "epoch\n",
             "plots/train_at_seed1.csv": "epoch\n", "plots/unrelated.csv": "not an output\n",
             "reports/results.md": "default results", "reports/figures/f.png": "png",
             "reports/plots/p.csv": "x\n", "reports/cifar10_cpu/calibration.md": "calibration",
             "reports/cifar10_cpu/stage_times.md": "| stage | seconds |\n|---|---|\n| an_earlier_run | 9 |\n"}
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    monkeypatch.chdir(root)
    for command in (["init", "-q"], ["add", "."], ["commit", "-qm", "default"]):
        subprocess.run(["git", *command], check=True)
    return root


def run(monkeypatch, *argv, stages="prepare,train@at,report", status="0"):
    monkeypatch.setenv("FAKE_STAGES", stages)
    monkeypatch.setenv("FAKE_STATUS", status)
    monkeypatch.setattr(sys, "argv", ["run_preset.py", *argv])
    return run_preset.main()


def test_switched_replaces_top_level_keys_and_keeps_comments():
    text = "# c\npreset: fashion_mnist\neps: 32\n"
    assert run_preset.switched(text, {"preset": "cifar10_cpu", "eps": "8"}) == "# c\npreset: cifar10_cpu\neps: 8\n"
    with pytest.raises(ParamError, match="no top-level key 'epz'"):
        run_preset.switched(text, {"epz": "8"})


def test_results_land_in_per_preset_folders_and_the_default_comes_back(repo, monkeypatch):
    assert run(monkeypatch, "cifar10_cpu", "-S", "eps=8") == 0
    assert json.loads((repo / "metrics/cifar10_cpu/data.json").read_text()) == {"dataset": "run"}
    assert (repo / "metrics/cifar10_cpu/attack/ask_cosine.json").exists()
    preset_reports = repo / "reports/cifar10_cpu"
    assert (preset_reports / "results.md").read_text() == "run results"
    for name in ("figures/f.png", "plots/p.csv", "outcomes/attack/ask_cosine.json", "training/train_at_seed0.csv",
                 "calibration.md"):
        assert (preset_reports / name).exists(), name
    assert "| train@at |" in (preset_reports / "stage_times.md").read_text()
    # the default preset's committed state is back, untouched
    assert subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", *run_preset.COMMITTED_OUTPUTS],
                          capture_output=True, text=True, check=True).stdout == ""
    assert json.loads((repo / "metrics/data.json").read_text()) == {"dataset": "default"}
    assert (repo / "resolved_params.yaml").read_text() == "# the default preset, merged\n"


def test_results_land_even_when_dvc_cannot_check_out_the_defaults_models(repo, monkeypatch, capsys):
    # a fresh clone: DVC's cache holds only this run's outputs, not the default preset's models
    monkeypatch.setenv("FAKE_CHECKOUT_STATUS", "255")
    assert run(monkeypatch, "cifar10_cpu", "-S", "eps=8") == 0
    assert json.loads((repo / "metrics/cifar10_cpu/data.json").read_text()) == {"dataset": "run"}
    assert (repo / "reports/cifar10_cpu/results.md").read_text() == "run results"
    assert json.loads((repo / "metrics/data.json").read_text()) == {"dataset": "default"}
    assert "warning: dvc checkout could not bring back" in capsys.readouterr().err


def test_only_the_runs_own_outputs_are_gathered_not_what_the_default_preset_left(repo, monkeypatch):
    # a one-seed run: DVC leaves the default preset's seed-1 files in metrics/ and plots/
    assert run(monkeypatch, "cifar10_cpu", "-S", "seeds=[0]") == 0
    assert (repo / "metrics/cifar10_cpu/train/at_seed0.json").exists()
    assert (repo / "reports/cifar10_cpu/training/train_at_seed0.csv").exists()
    assert not (repo / "metrics/cifar10_cpu/train/at_seed1.json").exists()
    assert not (repo / "reports/cifar10_cpu/training/train_at_seed1.csv").exists()
    assert not (repo / "reports/cifar10_cpu/training/unrelated.csv").exists()


def test_a_second_run_replaces_the_first_without_nesting(repo, monkeypatch):
    run(monkeypatch, "cifar10_cpu")
    subprocess.run(["git", "add", "."], check=True)
    subprocess.run(["git", "commit", "-qm", "first"], check=True)
    run(monkeypatch, "cifar10_cpu")
    assert not (repo / "metrics/cifar10_cpu/cifar10_cpu").exists()
    assert not (repo / "reports/cifar10_cpu/figures/figures").exists()


def test_refuses_to_overwrite_uncommitted_work(repo, monkeypatch):
    (repo / "metrics/data.json").write_text("{}")
    with pytest.raises(ParamError, match="uncommitted changes"):
        run(monkeypatch, "cifar10_cpu")
    assert "fashion_mnist" in (repo / "params.yaml").read_text()


def test_an_interrupted_run_continues_and_is_counted_whole(repo, monkeypatch):
    with pytest.raises(SystemExit):
        run(monkeypatch, "cifar10_cpu", stages="prepare,train@at", status="1")
    assert "preset: cifar10_cpu" in (repo / "params.yaml").read_text()   # left switched, to continue
    times = repo / "reports/cifar10_cpu/stage_times.md"
    assert list(time_repro.recorded(times)) == ["prepare"]   # the finished stage; train@at was cut off
    run(monkeypatch, "cifar10_cpu", stages="train@at,report")   # the same command: params already switched
    assert list(time_repro.recorded(times)) == ["prepare", "train@at", "report"]
    assert "fashion_mnist" in (repo / "params.yaml").read_text()


def test_a_new_run_does_not_count_the_committed_run_before_it(repo, monkeypatch):
    run(monkeypatch, "cifar10_cpu", stages="prepare,report")
    assert list(time_repro.recorded(repo / "reports/cifar10_cpu/stage_times.md")) == ["prepare", "report"]


def test_a_plain_timed_run_starts_a_fresh_table(repo, monkeypatch):
    out = repo / "times.md"
    time_repro.write_table(out, [], {"old": 5.0}, resumable=False)
    monkeypatch.setenv("FAKE_STAGES", "a,b")
    time_repro.timed_repro([], out)
    assert list(time_repro.recorded(out)) == ["a", "b"]
    assert "**total**" in out.read_text()


@pytest.mark.slow
def test_a_kept_preset_report_is_rendered_again_from_its_results_keeping_the_run_header(tracked_copy, monkeypatch):
    import render_preset
    for key in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{key}_NAME", "test")
        monkeypatch.setenv(f"GIT_{key}_EMAIL", "test@example.com")
    monkeypatch.chdir(tracked_copy)
    kept = Path("reports/cifar10_fast/results.md")
    header = kept.read_text().split("\n\n")[1]
    assert header.startswith(render_preset.RUN_HEADER)
    kept.write_text(f"# Results\n\n{header}\n\nan older rendering\n")
    (Path("metrics/cifar10_fast/verdicts.json")).unlink()
    for command in (["init", "-q"], ["add", "."], ["commit", "-qm", "project"]):
        subprocess.run(["git", *command], check=True)
    lock, params = Path("dvc.lock").read_text(), Path("params.yaml").read_text()

    render_preset.render("cifar10_fast", {"preset": "cifar10_fast", "eps": "8", "seeds": "[0]"})

    text = kept.read_text()
    assert text.split("\n\n")[1] == header and "an older rendering" not in text
    assert "Preset `cifar10_fast`" in text and "Table 1" in text
    verdicts = json.loads(Path("metrics/cifar10_fast/verdicts.json").read_text())["verdicts"]
    pooled = [v for v in verdicts if v.get("seeds") == 1]
    # one training seed: no verdict on a training method, though the run's own test rejected equality
    assert pooled and all(v["verdict"].startswith("not resolved") for v in pooled)
    assert all(v["verdict"].endswith("(one training run)") for v in pooled)
    # the working tree still describes the default preset; the temporary worktree is gone
    assert (Path("dvc.lock").read_text(), Path("params.yaml").read_text()) == (lock, params)
    assert "cifar10_fast" not in subprocess.run(["git", "worktree", "list"], capture_output=True, text=True).stdout


def test_a_bad_setting_ends_in_one_line_and_changes_nothing(repo):
    script = Path(run_preset.__file__)
    done = subprocess.run([sys.executable, str(script), "cifar10_cpu", "-S", "nope=1"], cwd=repo,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.splitlines() == ["error: -S nope=1: params.yaml has no top-level key 'nope'; -S sets the "
                                        "switches of params.yaml (e.g. -S eps=8)"]
    assert subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True).stdout == ""
