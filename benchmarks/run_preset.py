"""Run a whole preset and keep its results beside the default preset's, without changing what
`dvc.lock` and `dvc status` describe (not a stage: it drives `dvc repro`).

    python benchmarks/run_preset.py cifar10_cpu -S eps=8 -S 'seeds=[0]'

1. params.yaml is switched to the preset and the -S settings (top-level keys of params.yaml);
2. `dvc repro` runs, timed stage by stage (benchmarks/time_repro.py);
3. its results are gathered: metrics/ into metrics/<preset>/; reports/results.md, figures/, plots/,
   the per-image outcomes, the training curves and stage_times.md into reports/<preset>/;
4. the default preset comes back: params.yaml, dvc.lock and the committed outputs from git, the
   cached ones (models, banks, prepared data) with `dvc checkout`.

Interrupted, the same command continues: params.yaml stays switched, stages already done are up to
date in dvc.lock, and training resumes from its last epoch checkpoint (stage_times.md then counts
the stages of the interrupted run too). `--restore` gives up and brings the default back.
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from pipeline import inside, stages
from time_repro import timed_repro

from askknn.params import available_presets
from askknn.shared import ParamError
from askknn.runtime import METRICS_DIR, OUTCOMES, PLOTS, REPORTS, RESOLVED, run_stage

PARAMS = Path("params.yaml")
# source -> destination under reports/<preset>/ (metrics/ goes to metrics/<preset>/)
REPORT_COPIES = {REPORTS / "results.md": "results.md", REPORTS / "figures": "figures", REPORTS / "plots": "plots",
                 OUTCOMES: "outcomes", PLOTS: "training"}
# What a run of the pipeline rewrites that git holds for the default preset (DVC's cached outputs
# come back with `dvc checkout`).
COMMITTED_OUTPUTS = [str(p) for p in (PARAMS, RESOLVED, Path("dvc.lock"), METRICS_DIR, *REPORT_COPIES)]


def switched(text: str, settings: dict[str, str]) -> str:
    """params.yaml's text with top-level `key: value` lines replaced (comments kept)."""
    for key, value in settings.items():
        text, found = re.subn(rf"^{re.escape(key)}:.*$", f"{key}: {value}", text, flags=re.M)
        if not found:
            raise ParamError(f"-S {key}={value}: params.yaml has no top-level key {key!r}; "
                             f"-S sets the switches of params.yaml (e.g. -S eps=8)")
    return text


def git(*args: str) -> str:
    return subprocess.run(["git", *args], check=True, capture_output=True, text=True).stdout


def check_clean(target: str) -> None:
    """Refuses to start over uncommitted work in what the run overwrites, unless that work is this
    same run's (params.yaml already switched: an interrupted run being continued)."""
    if PARAMS.read_text() == target:
        return
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", *COMMITTED_OUTPUTS)
    if dirty:
        raise ParamError("uncommitted changes in what the run overwrites; commit or stash them first:\n" + dirty)


def gather(staging: Path, root: Path = Path()) -> None:
    """The outputs of the pipeline at `root` (dvc.yaml's stages under its params.yaml) among metrics/
    and the report's files, into `staging`. Left out: files there that this pipeline does not make
    (the default preset's seeds 1 and 2 in a one-seed run: DVC never deletes an output of a stage
    that no longer exists) and what a cut-off run did not make."""
    outs = [out for stage in stages(root) for out in stage.outs]
    copy_outputs(root, METRICS_DIR, staging / METRICS_DIR, outs)
    for source, name in REPORT_COPIES.items():
        copy_outputs(root, source, staging / REPORTS / name, outs)


def copy_outputs(root: Path, source: Path, target: Path, outs: list[str]) -> None:
    """The files at or under root/source that are, or lie in, one of `outs`, to the same place under
    `target`."""
    base = root / source
    files = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file())
    for path in files:
        if any(inside(path.relative_to(root).as_posix(), out) for out in outs):
            dest = target / path.relative_to(base)   # base itself: relative_to gives ".", dest is target
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)


def clear_gathered() -> None:
    """Delete everything `gather` would collect (the working tree's results of some earlier run,
    e.g. the default preset's committed ones), so that a run cut short packs only its own."""
    kept = set(available_presets())
    for path in [*(p for p in METRICS_DIR.glob("*") if p.name not in kept), *REPORT_COPIES]:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def install(preset: str, staging: Path) -> None:
    """Each gathered item replaces its namesake in metrics/<preset>/ and reports/<preset>/; files
    there that a run does not gather (stage_times.md, the preset's calibration) stay."""
    for kind in (METRICS_DIR, REPORTS):
        home = kind / preset
        home.mkdir(parents=True, exist_ok=True)
        for item in (staging / kind).iterdir():
            old = home / item.name
            if old.is_dir():
                shutil.rmtree(old)
            shutil.move(str(item), old)


def settings_of(parser: argparse.ArgumentParser, preset: str, items: list[str]) -> dict[str, str]:
    """params.yaml's switches for a run: the preset and each -S KEY=VALUE."""
    settings = {"preset": preset}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"-S {item}: expected KEY=VALUE, e.g. -S eps=8")
        settings[key] = value
    return settings


def restore_default() -> None:
    git("checkout", "--", *COMMITTED_OUTPUTS)
    checkout_cached()


def checkout_cached() -> None:
    """The default preset's cached outputs (models, banks, prepared data) from DVC's cache. Those it
    never held (a fresh clone's cache has only what ran here) stay missing: `dvc repro` rebuilds them."""
    if subprocess.run(["dvc", "checkout"]).returncode:
        print("warning: dvc checkout could not bring back every cached output of the default preset (see above); "
              "`dvc repro` rebuilds the missing ones", file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("preset", choices=available_presets())
    parser.add_argument("-S", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help="a top-level setting of params.yaml for this run, e.g. -S eps=8")
    parser.add_argument("--restore", action="store_true", help="abandon an interrupted run; bring the default back")
    args = parser.parse_args()
    if args.restore:
        restore_default()
        return 0
    target = switched(git("show", "HEAD:params.yaml"), settings_of(parser, args.preset, args.settings))
    check_clean(target)
    continuing = PARAMS.read_text() == target   # an interrupted run leaves params.yaml switched
    PARAMS.write_text(target)
    # a new run starts a fresh table: the committed one is an earlier, finished run's
    timed_repro([], REPORTS / args.preset / "stage_times.md", resumable=continuing)
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        gather(Path(tmp))
        git("checkout", "--", *COMMITTED_OUTPUTS)
        install(args.preset, Path(tmp))
    checkout_cached()
    print(f"results in reports/{args.preset}/ and metrics/{args.preset}/; the default preset is restored")
    return 0


if __name__ == "__main__":
    run_stage(lambda: sys.exit(main()))   # a bad preset or setting: its one-line message, status 2
