"""Run a preset's whole pipeline where DVC is not installed (a borrowed GPU machine with no
internet), and bring its results home beside the default preset's.

    python benchmarks/gpu_run.py run cifar10_fast -S eps=8 -S 'seeds=[0]' --archive OUT/cifar10_fast.tar.gz
    python benchmarks/gpu_run.py gather OUT/cifar10_fast.tar.gz     # back here: metrics/ and reports/<preset>/

`run` reads the stages of dvc.yaml (foreach, matrix and ${...} resolved as DVC resolves them),
orders them by their deps and outs, and runs every stage's script in this one process (runpy), so
the stages (52 with one training seed, 85 with three) pay for Python, torch and CUDA start-up once.
It writes stage_times.md (device, seconds per stage) after every stage, stops starting stages after
`--deadline` seconds (the report still runs, naming what is missing), and packs
metrics/, outcomes/, the report, its figures and the training curves into one .tar.gz (one file
to bring back, a few MB). `gather` unpacks such an archive into metrics/<preset>/ and
reports/<preset>/, as benchmarks/run_preset.py does after a `dvc repro`.

benchmarks/gpu_run.sh wraps `run` for the device machine (carried wheels, the data archive).
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import multiprocessing
import os
import queue
import platform
import runpy
import shlex
import signal
import sys
import tarfile
import tempfile
import time
import traceback
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from pipeline import Stage, inside, stages  # noqa: E402
from run_preset import clear_gathered, gather, install, switched  # noqa: E402

from askknn.io import write_text  # noqa: E402
from askknn.params import available_presets, preset_config  # noqa: E402
from askknn.runtime import REPORTS  # noqa: E402
# this module's own run_stage runs one DVC stage; askknn's gives a script its one-line errors
from askknn.runtime import run_stage as run_main  # noqa: E402

LATE = ("eps_sweep", "ask_appendix")   # the curves and appendix tables: after Tables 1, 3 and 5 under a deadline
FINAL = "report"   # runs even past the deadline: it reports what was made and names what was not


def needs(found: list[Stage]) -> dict[str, set[str]]:
    """Per stage, the stages whose outputs it depends on (a dep may be a folder holding outputs)."""
    return {s.name: {o.name for o in found if o is not s and any(inside(out, dep) or inside(dep, out)
                                                                 for dep in s.deps for out in o.outs)}
            for s in found}


def ordered(found: list[Stage]) -> list[Stage]:
    """A stage after every stage whose outputs it depends on; otherwise dvc.yaml's order, the LATE
    stages after the others."""
    needs_of, done, order = needs(found), set(), []
    while len(order) < len(found):
        ready = [s for s in found if s.name not in done and needs_of[s.name] <= done]
        if not ready:
            raise SystemExit(f"dvc.yaml has a cycle among: {', '.join(sorted(set(needs_of) - done))}")
        chosen = min(ready, key=lambda s: s.name.split("@")[0] in LATE)   # the first ready, LATE last
        order.append(chosen)
        done.add(chosen.name)
    return order


class TimeLimit(BaseException):
    """SIGTERM from an outer time limit. Not an Exception: neither a stage's own handlers nor the
    `except Exception` that fails one stage take it, so the whole run stops (and still packs)."""


def stop_at_time_limit(*_) -> None:
    raise TimeLimit


def run_stage(cmd: str) -> None:
    """A stage's command (`[env K=V ...] python script args`) in this process."""
    words = shlex.split(cmd)
    at = next(i for i, w in enumerate(words) if Path(w).name.startswith("python"))
    os.environ.update(dict(w.split("=", 1) for w in words[:at] if "=" in w))
    script, args = words[at + 1], words[at + 2:]
    saved = sys.argv
    sys.argv = [script, *args]
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as exc:   # a stage's own exit (a bad parameter: status 2) fails the stage, not the run
        if exc.code not in (0, None):
            raise RuntimeError(f"{script} exited with status {exc.code}") from None
    finally:
        sys.argv = saved


def device_name() -> str:
    import torch
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()} (torch {torch.__version__})"
    return f"CPU: {os.cpu_count()} cores, {platform.machine()} (torch {torch.__version__})"


@dataclass
class Progress:
    """What a run has done: seconds per finished stage (measured where it ran), the stages failed or
    not run, and the wall clock since the start; written to stage_times.md after every stage."""
    out: Path
    preset: str
    settings: dict
    device: str
    workers: int
    total: int
    seconds: dict = field(default_factory=dict)
    skipped: list = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)

    def wall(self) -> float:
        return time.perf_counter() - self.started

    def how(self) -> str:
        return "one process" if self.workers == 1 else f"{self.workers} worker processes"

    def write(self) -> None:
        busy = sum(self.seconds.values())
        lines = [f"# Wall time of each stage: preset `{self.preset}`, {self.how()} (benchmarks/gpu_run.py)\n",
                 f"- device: {self.device}",
                 f"- settings: {', '.join(f'{k}={v}' for k, v in self.settings.items())}",
                 f"- date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
                 f"- total: {self.wall():.0f} s ({self.wall() / 60:.1f} min) wall clock over {len(self.seconds)} "
                 f"stages ({busy:.0f} s of stage time)"
                 + (f"; failed or not run (deadline, or a stage it needs failed): {', '.join(self.skipped)}"
                    if self.skipped else ""),
                 "", "| stage | seconds |", "|---|---|"]
        lines += [f"| {name} | {s:.1f} |" for name, s in self.seconds.items()]
        write_text(self.out, "\n".join(lines) + "\n")

    def provenance(self) -> str:
        """The report's line on where and how long the run ran, and which stages it did not finish."""
        minutes = self.wall() / 60
        ran = f"the whole pipeline in {minutes:.1f} min" if not self.skipped else \
            f"{self.total - len(self.skipped)} of {self.total} stages in {minutes:.1f} min (not run or failed: " \
            f"{', '.join(self.skipped)})"
        return f"Run on {self.device}: {ran}, {self.how()} (benchmarks/gpu_run.py; stage times in stage_times.md)."


def free_memory() -> None:
    import torch
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.empty_cache()


def timed_stage(cmd: str) -> tuple[bool, float]:
    """One stage where this is called (this process or a worker): (finished without error, seconds)."""
    tic, ok = time.perf_counter(), True
    try:
        run_stage(cmd)
    except Exception:   # the run goes on with the stages that do not need this one
        traceback.print_exc()
        ok = False
    free_memory()
    return ok, time.perf_counter() - tic


def start_worker(threads: int) -> None:
    import torch
    torch.set_num_threads(threads)   # the machine's cores shared among the workers


class InProcess:
    """One worker: each stage in this process, one after another (nothing to start or to stop)."""

    def submit(self, fn, *args) -> Future:
        done = Future()
        done.set_result(fn(*args))
        return done


@contextlib.contextmanager
def workers_for(count: int):
    """Something with submit(fn, *args) -> Future: this process for 1, else a pool of `count`
    long-lived processes (each pays for Python, torch and CUDA start-up once). A worker that dies
    (killed, out of memory) breaks the pool: its stage and every later one fail instead of hanging."""
    if count == 1:
        yield InProcess()
        return
    threads = max(1, (os.cpu_count() or 1) // count)
    pool = ProcessPoolExecutor(count, multiprocessing.get_context("spawn"), start_worker, (threads,))
    try:
        yield pool
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def submitted(pool, cmd: str) -> Future:
    """timed_stage(cmd) on the pool; once a lost worker has broken it, a future that failed at once."""
    try:
        return pool.submit(timed_stage, cmd)
    except BrokenProcessPool as lost:
        failed = Future()
        failed.set_exception(lost)
        return failed


def outcome(future: Future) -> tuple[bool, float]:
    """timed_stage's (ok, seconds), or a failure when the worker itself was lost."""
    if future.exception() is not None:
        print(f"a worker was lost: {future.exception()!r}", file=sys.stderr, flush=True)
        return False, 0.0
    return future.result()


def startable(stage: Stage, needs_of: dict, progress: Progress, pending: list, deadline: float | None) -> str:
    """'skip' (a stage it needs failed or was not run, or the deadline has passed; FINAL is never
    skipped), 'start' (everything it needs has finished; FINAL only when it is the last), or 'wait'."""
    late = deadline is not None and progress.wall() > deadline
    if stage.name != FINAL and (late or needs_of[stage.name] & set(progress.skipped)):
        return "skip"
    finished = set(progress.seconds) | set(progress.skipped)
    if needs_of[stage.name] <= finished and (stage.name != FINAL or len(pending) == 1):
        return "start"
    return "wait"


def next_result(finished: queue.Queue):
    """The next finished stage; waits in short slices so that a time limit's SIGTERM is handled."""
    while True:
        with contextlib.suppress(queue.Empty):
            return finished.get(timeout=1.0)


def dispatch(order: list[Stage], needs_of: dict, deadline: float | None, progress: Progress, workers: int) -> None:
    """Every stage once the stages it needs have finished, at most `workers` at a time, the ready
    ones in `order`."""
    pending, running, finished = list(order), set(), queue.Queue()
    with workers_for(workers) as pool:
        while pending or running:
            for stage in list(pending):
                verdict = startable(stage, needs_of, progress, pending, deadline)
                if verdict == "skip":
                    pending.remove(stage)
                    progress.skipped.append(stage.name)
                elif verdict == "start" and len(running) < workers:
                    pending.remove(stage)
                    running.add(stage.name)
                    print(f"--- {stage.name}: {stage.cmd}", flush=True)
                    submitted(pool, stage.cmd).add_done_callback(lambda f, n=stage.name: finished.put((n, outcome(f))))
            if running:
                name, (ok, seconds) = next_result(finished)
                running.discard(name)
                progress.seconds[name] = seconds
                if not ok:
                    progress.skipped.append(name)
                progress.write()


def run(preset: str, settings: dict, archive: Path, deadline: float | None, workers: int = 1) -> int:
    """Every stage (at most `workers` at a time); stage_times.md beside the archive after each stage
    (so a run cut off from outside still reports its times), and the archive of whatever was made,
    even after a failure."""
    settings = {"preset": preset, **settings}
    params = Path("params.yaml")
    params.write_text(switched(params.read_text(), settings))
    signal.signal(signal.SIGTERM, stop_at_time_limit)   # killed by a time limit: stop, still pack (finally)
    found = stages()
    progress = Progress(archive.parent / "stage_times.md", preset, settings, device_name(), workers, len(found))
    clear_gathered()   # the tree's committed results are not this run's
    stopped = False
    try:
        dispatch(ordered(found), needs(found), deadline, progress, workers)
    except TimeLimit:
        stopped = True
        print("SIGTERM (a time limit): the run stops here and packs what it made", file=sys.stderr, flush=True)
    finally:
        progress.write()
        pack(archive, progress.out, progress.provenance())
        print(f"{archive}: {archive.stat().st_size / 2**20:.1f} MiB; {progress.wall() / 60:.1f} min", flush=True)
    return 143 if stopped else 1 if progress.skipped else 0


def pack(archive: Path, times: Path, header: str) -> None:
    """The results into one .tar.gz; the report's copy starts with `header` (device and minutes)."""
    with tempfile.TemporaryDirectory() as tmp:
        staging = Path(tmp)
        gather(staging)
        (staging / REPORTS).mkdir(parents=True, exist_ok=True)
        (staging / REPORTS / "stage_times.md").write_bytes(times.read_bytes())
        results = staging / REPORTS / "results.md"
        if results.exists():
            title, _, rest = results.read_text().partition("\n")
            results.write_text(f"{title}\n\n{header}\n{rest}")
        archive.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(staging, arcname=".")


def unpack(archive: Path, preset: str | None) -> str:
    """Install an archive of `run` into metrics/<preset>/ and reports/<preset>/; returns the preset
    (read from the archive's metrics/preset.json unless given)."""
    import json
    with tempfile.TemporaryDirectory(dir=".") as tmp, tarfile.open(archive) as tar:
        tar.extractall(tmp, filter="data")
        staging = Path(tmp)
        preset = preset or json.loads((staging / "metrics" / "preset.json").read_text())["preset"]
        install(preset, staging)
    return preset


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    go = sub.add_parser("run", help="run every stage of a preset in this process and pack the results")
    go.add_argument("preset", choices=available_presets(ROOT))
    go.add_argument("-S", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                    help="a top-level setting of params.yaml, e.g. -S eps=8")
    go.add_argument("--archive", type=Path, required=True, help="where to write the .tar.gz of the results")
    go.add_argument("--deadline", type=float, help="seconds after which no further stage starts")
    go.add_argument("--workers", type=int, default=1, help="stages run at once, each worker a long-lived process "
                    "(default 1: every stage in this process)")
    back = sub.add_parser("gather", help="install a run's archive into metrics/<preset>/ and reports/<preset>/")
    back.add_argument("archive", type=Path)
    back.add_argument("--preset", help="the preset's name (default: the one recorded in the archive)")
    args = parser.parse_args()
    args.archive = args.archive.resolve()
    os.chdir(ROOT)
    if args.command == "gather":
        print(f"results in reports/{unpack(args.archive, args.preset)}/")
        return 0
    settings = {}
    for item in args.settings:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"-S {item}: expected KEY=VALUE, e.g. -S eps=8")
        settings[key] = value
    if args.workers < 1:
        parser.error(f"--workers {args.workers}: give 1 or more")
    if preset_config(args.preset)["train"]["launcher"] == "torchrun":
        parser.error(f"{args.preset}: train.launcher is torchrun, which would replace this process (it runs the "
                     f"stages itself); set train.launcher: python, or run the preset with dvc repro")
    return run(args.preset, settings, args.archive, args.deadline, args.workers)


if __name__ == "__main__":
    run_main(lambda: sys.exit(main()))   # a preset that does not validate: its one-line message, status 2
