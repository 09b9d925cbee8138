"""benchmarks/gpu_run.py: dvc.yaml's stages resolved and ordered without DVC, run in one process,
a failed stage skipping only what needs it, and the results packed and gathered into
metrics/<preset>/ and reports/<preset>/ (the whole `tiny` preset through benchmarks/gpu_run.sh)."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest

from askknn import registry
from askknn.report.common import ATTACK_NAMES

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu_run  # noqa: E402
import pipeline  # noqa: E402


def test_the_stages_are_dvcs_own_and_each_runs_after_what_it_needs():
    listed = subprocess.run(["dvc", "stage", "list", "--name-only"], cwd=ROOT, check=True, capture_output=True,
                            text=True).stdout.split()
    found = pipeline.stages(ROOT)
    assert sorted(s.name for s in found) == sorted(listed)
    position = {s.name: i for i, s in enumerate(gpu_run.ordered(found))}
    for stage, producers in gpu_run.needs(found).items():
        assert all(position[p] < position[stage] for p in producers), stage
    by_name = {s.name: s for s in found}
    assert by_name["attack@sw20-l2"].cmd.endswith("python stages/attack.py sw20 l2 0")
    assert "models/advknn_at_l2.safetensors" in by_name["attack@sw20-l2"].deps
    assert {"advknn_block@at-l2", "tune@at"} <= gpu_run.needs(found)["attack@sw20-l2"]
    assert "attack@ask-cosine" in gpu_run.needs(found)["report"]   # through the folder dep metrics/attack


PROJECT = {
    "params.yaml": "preset: a\neps: 1\n",
    "dvc.yaml": textwrap.dedent("""\
        vars:
          - params.yaml
          - names: [one, two]
        stages:
          last:
            cmd: python steps/write.py last done/last out/one.txt out/two.txt
            deps: [steps/write.py, out]
            outs: [done/last]
          make:
            foreach: ${names}
            do:
              cmd: python steps/write.py ${item} out/${item}.txt
              deps: [steps/write.py]
              outs: ["out/${item}.txt"]
          broken:
            cmd: python steps/fail.py
            outs: [broken.txt]
          after_broken:
            cmd: python steps/write.py x after.txt broken.txt
            deps: [broken.txt]
            outs: [after.txt]
        """),
    "steps/write.py": textwrap.dedent("""\
        import sys, pathlib
        tag, out, *inputs = sys.argv[1:]
        text = tag + "".join(pathlib.Path(i).read_text() for i in inputs)
        pathlib.Path(out).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(out).write_text(text)
        """),
    "steps/fail.py": "raise RuntimeError('this stage fails')\n",
}


@pytest.mark.parametrize("workers", [1, 2])
def test_stages_run_after_what_they_need_and_a_failure_skips_only_its_dependents(tmp_path, monkeypatch, workers):
    """One worker: every stage in this process; two: a pool of processes running ready stages at once."""
    for name, text in PROJECT.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    (tmp_path / "metrics").mkdir()
    monkeypatch.chdir(tmp_path)
    status = gpu_run.run("b", {"eps": "2"}, tmp_path / "back" / "b.tar.gz", deadline=None, workers=workers)
    assert status == 1
    assert (tmp_path / "done/last").read_text() == "lastonetwo"   # ran after both instances of make
    assert not (tmp_path / "after.txt").exists()
    assert (tmp_path / "params.yaml").read_text() == "preset: b\neps: 2\n"
    times = (tmp_path / "back" / "stage_times.md").read_text()
    assert "failed or not run (deadline, or a stage it needs failed): broken, after_broken" in times
    assert "| make@one |" in times and "| after_broken |" not in times
    with tarfile.open(tmp_path / "back" / "b.tar.gz") as tar:
        assert "./reports/stage_times.md" in tar.getnames()


def test_a_worker_that_dies_fails_its_stage_instead_of_hanging_the_run(tmp_path):
    """A stage that kills its worker process (as an out-of-memory kill would): the run still ends,
    the stage and what needs it count as failed, and the report's line says so."""
    project = {**PROJECT, "steps/fail.py": "import os\nos._exit(9)\n"}
    for name, text in project.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    (tmp_path / "metrics").mkdir()
    script = (f"import sys; sys.path[:0] = [{str(ROOT / 'benchmarks')!r}]; import gpu_run; from pathlib import Path; "
              "sys.exit(gpu_run.run('b', {}, Path('back/b.tar.gz'), deadline=None, workers=2))")
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, timeout=300, capture_output=True, text=True)
    assert done.returncode == 1, done.stderr
    assert "a worker was lost" in done.stderr
    times = (tmp_path / "back/stage_times.md").read_text()
    assert "broken" in times.split("failed or not run")[1] and "after_broken" in times


TIME_LIMIT = {
    "params.yaml": "preset: a\n",
    "dvc.yaml": textwrap.dedent("""\
        stages:
          stopped:
            cmd: python steps/term.py
          other:
            cmd: python steps/write.py other other.txt
            outs: [other.txt]
        """),
    # a time limit's SIGTERM arrives while a stage runs in this process
    "steps/term.py": "import os, signal, time\nos.kill(os.getpid(), signal.SIGTERM)\ntime.sleep(5)\n",
    "steps/write.py": PROJECT["steps/write.py"],
}


def test_a_time_limit_during_a_stage_stops_the_whole_run_and_still_packs(tmp_path, monkeypatch):
    for name, text in TIME_LIMIT.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    (tmp_path / "metrics").mkdir()
    monkeypatch.chdir(tmp_path)
    handler = signal.getsignal(signal.SIGTERM)
    try:
        status = gpu_run.run("a", {}, tmp_path / "back" / "a.tar.gz", deadline=None)
    finally:
        signal.signal(signal.SIGTERM, handler)
    assert status == 143
    assert not (tmp_path / "other.txt").exists()   # not taken for one failed stage: nothing else started
    assert tarfile.is_tarfile(tmp_path / "back" / "a.tar.gz")


CUT_SHORT = {
    "params.yaml": "preset: a\n",
    "dvc.yaml": textwrap.dedent("""\
        stages:
          sweep:
            cmd: python steps/write.py sweep metrics/sweep.json
            outs: [metrics/sweep.json]
          table:
            cmd: python steps/write.py table metrics/table.json
            outs: [metrics/table.json]
          report:
            cmd: python steps/report.py
            deps: [metrics]
            outs: [reports/results.md]
        """),
    "steps/write.py": PROJECT["steps/write.py"],
    "steps/report.py": textwrap.dedent("""\
        import pathlib
        found = sorted(p.name for p in pathlib.Path("metrics").glob("*.json"))
        pathlib.Path("reports").mkdir(exist_ok=True)
        pathlib.Path("reports/results.md").write_text("made: " + ", ".join(found))
        """),
    # the committed results of another preset, which a run cut short must not pass off as its own
    "metrics/sweep.json": "the default preset's",
    "metrics/table.json": "the default preset's",
    "reports/results.md": "the default preset's",
    "metrics/trained/at_seed1.json": "a seed this run does not train",
    "metrics/cifar10_fast/data.json": "another preset's gathered results",
    "presets/cifar10_fast.yaml": "",
}


def test_a_run_past_its_deadline_still_reports_and_packs_nothing_it_did_not_make(tmp_path, monkeypatch):
    for name, text in CUT_SHORT.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(gpu_run, "LATE", ("sweep",))
    assert [s.name for s in gpu_run.ordered(pipeline.stages())] == ["table", "sweep", "report"]
    assert gpu_run.run("b", {}, tmp_path / "back" / "b.tar.gz", deadline=0) == 1
    assert (tmp_path / "reports/results.md").read_text() == "made: "   # ran; the stale metrics were removed
    with tarfile.open(tmp_path / "back" / "b.tar.gz") as tar:
        names = tar.getnames()
        results = tar.extractfile("./reports/results.md").read().decode()
    assert not any(n.startswith("./metrics/") and n.endswith(".json") for n in names)
    assert (tmp_path / "metrics/cifar10_fast/data.json").exists()   # gathered results of other presets stay
    assert "1 of 3 stages in" in results and "(not run or failed: table, sweep)" in results
    times = (tmp_path / "back/stage_times.md").read_text()
    assert "not run (deadline, or a stage it needs failed): table, sweep" in times


@pytest.mark.slow
def test_the_tiny_preset_runs_whole_through_the_shell_script_and_is_gathered(tmp_path, monkeypatch, tracked_copy):
    copy = tracked_copy
    out = tmp_path / "out"
    subprocess.run(["bash", "benchmarks/gpu_run.sh", "run", "tiny", str(out), "-S", "eps=24", "--workers", "2"],
                   cwd=copy, check=True, timeout=900)   # two worker processes: stages that are ready run at once
    assert sorted(p.name for p in out.iterdir()) == ["stage_times.md", "tiny.tar.gz"]
    assert (out / "tiny.tar.gz").stat().st_size < 16 * 2**20   # what the device tool brings back
    assert f"over {len(pipeline.stages(copy))} stages" in (out / "stage_times.md").read_text()
    subprocess.run([sys.executable, "benchmarks/gpu_run.py", "gather", str(out / "tiny.tar.gz")], cwd=copy, check=True)
    assert json.loads((copy / "metrics/tiny/preset.json").read_text()) == {"preset": "tiny"}
    assert json.loads((copy / "metrics/tiny/attack/ask_cosine.json").read_text())["eps"] == 24
    results = (copy / "reports/tiny/results.md").read_text()
    assert "the whole pipeline in" in results and "CPU" in results and "2 worker processes" in results
    assert (copy / "reports/tiny/stage_times.md").exists() and (copy / "reports/tiny/figures").is_dir()
    # every method under every training seed, and Table 3's pooled verdicts
    for label in ("ASK-Def, seed 2", "AT+SNN, mean of 3 seeds"):
        assert label in results
    assert "per-image sign test p = " in results and "t-test over seeds p = " in results
    # the control's own training attack; success rates with their n; blocks' agreement on the evaluated images
    assert "AT (G2 budget): PGD-2 (step 6/255 at eps 24/255)" in results and "n (clean correct, first 40)" in results
    assert "conv4, evaluation images" in results
    # the cascade's cost rows in the order the cascade ran, for every model and layer set
    cost = results.split("Cost of the cascade")[1].split("\n\n")[1]
    rows = [line.split("|")[1].strip().rsplit(", ", 1) for line in cost.splitlines()[2:]]
    names = [ATTACK_NAMES[a] for a in registry.cascade()]
    by_setting = {}
    for setting, attack in rows:
        by_setting.setdefault(setting, []).append(attack)
    assert by_setting and all(order == [n for n in names if n in order] for order in by_setting.values())
    # Table 3's seed-0 AT cell is Table 1's first start: same model, attack and generator
    outcomes = copy / "reports/tiny/outcomes"
    trained = json.loads((outcomes / "trained/at_seed0.json").read_text())["robust"]["ask"]
    table1 = json.loads((outcomes / "attack/ask_cosine.json").read_text())["robust"]
    assert trained == {name: cells["start_0"] for name, cells in table1.items()}
    # the library from another working directory, on the project's trained model (README, "Use from Python")
    from askknn.experiments import AttackSuite
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    suite = AttackSuite.from_project(copy, "at")
    suite.use_tuning()
    result = suite.run("ask", ["conv4"], "cosine", eps=24, n=20)
    assert result["images"] == 20 and result["outcomes"]["conv4"]["adversarial"].shape == (20,)


def test_dvc_paths_with_list_indices_resolve_as_dvc_resolves_them():
    context = {"seeds": [3, 4], "item": {"method": "at"}}
    path = pipeline.resolve("models/${item.method}_seed${seeds[0]}.safetensors", context)
    assert path == "models/at_seed3.safetensors"
    assert pipeline.resolve("${seeds}", context) == [3, 4]


def test_a_torchrun_preset_is_refused_before_anything_runs(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)   # main() works from the project; monkeypatch brings the directory back
    monkeypatch.setattr(gpu_run, "preset_config", lambda name: {"train": {"launcher": "torchrun"}})
    monkeypatch.setattr(gpu_run, "run", lambda *args: pytest.fail("the run started"))
    monkeypatch.setattr(sys, "argv", ["gpu_run.py", "run", "tiny", "--archive", "x.tar.gz"])
    with pytest.raises(SystemExit) as stop:
        gpu_run.main()
    assert stop.value.code == 2 and "train.launcher is torchrun" in capsys.readouterr().err
