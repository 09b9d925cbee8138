"""Render a gathered preset's report again, from its kept results, without running any other stage
(after a change to the report: new sections, new verdict rules).

    python benchmarks/render_preset.py cifar10_fast -S eps=8 -S 'seeds=[0]'

Give the same -S settings as the run (`run_preset.py` or `gpu_run.sh`): they decide what the
report says about the setting. In a temporary git worktree of HEAD (the working tree and its
`dvc.lock` are not touched), params.yaml is switched to the preset, metrics/<preset>/ and
reports/<preset>/'s outcomes and training curves are put where the stages wrote them, stages
check_params and report run, and their results replace the kept ones: reports/<preset>/results.md
(keeping its first paragraph if it is a run's header: the device and minutes), its figures, and
metrics/<preset>/verdicts.json.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from run_preset import REPORT_COPIES, gather, git, install, settings_of, switched

from askknn.params import available_presets
from askknn.runtime import METRICS_DIR, REPORTS

RUN_HEADER = "Run on "   # the first words of a GPU run's header (benchmarks/gpu_run.py)


def place_kept_results(preset: str, tree: Path) -> None:
    """The preset's kept results into `tree` where the stages write them."""
    shutil.rmtree(tree / METRICS_DIR)
    shutil.copytree(METRICS_DIR / preset, tree / METRICS_DIR)
    for source, name in REPORT_COPIES.items():
        kept = REPORTS / preset / name
        if source != REPORTS / "results.md" and kept.is_dir():
            shutil.rmtree(tree / source, ignore_errors=True)
            shutil.copytree(kept, tree / source)


def header_of(results: Path) -> str | None:
    """The run's header paragraph of a kept results.md (None if it has none)."""
    if not results.exists():
        return None
    paragraphs = results.read_text().split("\n\n")
    return paragraphs[1] if len(paragraphs) > 1 and paragraphs[1].startswith(RUN_HEADER) else None


def render(preset: str, settings: dict[str, str]) -> None:
    header = header_of(REPORTS / preset / "results.md")
    with tempfile.TemporaryDirectory() as tmp:
        tree, staging = Path(tmp) / "tree", Path(tmp) / "staging"
        git("worktree", "add", "--detach", str(tree), "HEAD")
        try:
            (tree / "params.yaml").write_text(switched(git("show", "HEAD:params.yaml"), settings))
            place_kept_results(preset, tree)
            env = {**os.environ, "PYTHONPATH": str(tree)}
            for stage in ("check_params", "report"):
                subprocess.run([sys.executable, f"stages/{stage}.py"], cwd=tree, env=env, check=True)
            gather(staging, tree)
        finally:
            git("worktree", "remove", "--force", str(tree))
        results = staging / REPORTS / "results.md"
        if header:
            title, _, rest = results.read_text().partition("\n")
            results.write_text(f"{title}\n\n{header}\n{rest}")
        install(preset, staging)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("preset", choices=[p for p in available_presets() if (METRICS_DIR / p).is_dir()])
    parser.add_argument("-S", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help="a top-level setting of params.yaml as in the run, e.g. -S eps=8")
    args = parser.parse_args()
    render(args.preset, settings_of(parser, args.preset, args.settings))
    print(f"reports/{args.preset}/results.md rendered again from metrics/{args.preset}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
