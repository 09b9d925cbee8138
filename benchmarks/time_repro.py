"""Run `dvc repro` (arguments pass through) and write each stage's wall time to reports/stage_times.md.

    python benchmarks/time_repro.py            # the default preset, as `make repro` runs it
    python benchmarks/time_repro.py -f         # force every stage
"""
from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

from askknn.io import write_text
from askknn.runtime import REPORTS

STAGE = re.compile(r"Running stage '([^']+)'")
ROW = re.compile(r"^\| (?!\*\*)([^|]+?) \| (\d+) \|$", re.M)


def recorded(out: Path) -> dict[str, float]:
    """The stage rows of an earlier stage_times.md (the total row left out)."""
    return {m[1]: float(m[2]) for m in ROW.finditer(out.read_text())} if out.exists() else {}


def write_table(out: Path, args: list[str], seconds: dict[str, float], resumable: bool) -> None:
    total = sum(seconds.values())
    lines = ["# Wall time of each stage of `dvc repro`\n",
             f"{os.cpu_count()} CPU cores ({platform.machine()}), `dvc repro {' '.join(args)}`, "
             f"stages run one after another; a stage not listed was up to date."
             + (" Rows of an earlier, interrupted run of the same command are kept; a stage run again replaces "
                "its row." if resumable else "") + "\n",
             "| stage | seconds |", "|---|---|"]
    lines += [f"| {name} | {s:.0f} |" for name, s in seconds.items()]
    lines.append(f"| **total** | **{total:.0f}** ({total / 60:.1f} min) |")
    write_text(out, "\n".join(lines) + "\n")


def timed_repro(args: list[str], out: Path, resumable: bool = False) -> None:
    """`dvc repro *args`, echoing its output; writes the wall time of every stage that ran to `out`,
    after each stage (nothing when every stage was up to date). `resumable` keeps the rows `out`
    already holds, so a run continued after an interruption is counted whole. Exits with dvc's
    status if it fails."""
    seconds = recorded(out) if resumable else {}
    proc = subprocess.Popen(["dvc", "repro", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    running: tuple[str, float] | None = None

    def finish(now: float) -> None:
        if running:
            seconds.pop(running[0], None)   # a re-run stage moves to the end, in run order
            seconds[running[0]] = now - running[1]
            write_table(out, args, seconds, resumable)

    for line in proc.stdout:
        sys.stdout.write(line)
        if match := STAGE.search(line):
            now = time.perf_counter()
            finish(now)
            running = (match.group(1), now)
    if status := proc.wait():
        sys.exit(status)   # the stage that failed or was cut off gets no row
    finish(time.perf_counter())


def main() -> None:
    timed_repro(sys.argv[1:], REPORTS / "stage_times.md")


if __name__ == "__main__":
    main()
