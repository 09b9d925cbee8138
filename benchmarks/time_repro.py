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

from askknn.io import write_text
from askknn.runtime import REPORTS

STAGE = re.compile(r"Running stage '([^']+)'")


def main() -> None:
    started = time.perf_counter()
    proc = subprocess.Popen(["dvc", "repro", *sys.argv[1:]], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    marks: list[tuple[str, float]] = []
    for line in proc.stdout:
        sys.stdout.write(line)
        if match := STAGE.search(line):
            marks.append((match.group(1), time.perf_counter()))
    if proc.wait():
        sys.exit(proc.returncode)
    end = time.perf_counter()
    rows = [(name, (marks[i + 1][1] if i + 1 < len(marks) else end) - t) for i, (name, t) in enumerate(marks)]
    lines = ["# Wall time of each stage of `dvc repro`\n",
             f"{os.cpu_count()} CPU cores ({platform.machine()}), `dvc repro {' '.join(sys.argv[1:])}`, "
             f"stages run one after another; a stage not listed was up to date.\n",
             "| stage | seconds |", "|---|---|"]
    lines += [f"| {name} | {seconds:.0f} |" for name, seconds in rows]
    lines.append(f"| **total** | **{end - started:.0f}** ({(end - started) / 60:.1f} min) |")
    write_text(REPORTS / "stage_times.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
