"""How stable are the report's verdicts? Re-runs a preset with other training and attack seeds and
compares the two metrics/verdicts.json (not a stage: it runs the whole pipeline once more).

    python benchmarks/verdict_stability.py                   # disjoint seeds: 0, 1, 2 -> 3, 4, 5
    python benchmarks/verdict_stability.py --offset 7
    python benchmarks/verdict_stability.py --keep ../second_run.tar.gz   # also keep the second run's files
    python benchmarks/verdict_stability.py --second          # no re-run: the committed second run again

The committed verdicts (metrics/verdicts.json, from `dvc repro`) are the first set. The second comes
from a copy of the project's tracked files in a temporary folder, where every training seed of
params.yaml's `seeds` and the preset's attacks.seed are raised by `--offset` (by default the number
of seeds, so the two sets of training seeds are disjoint) and every stage runs in one process
(benchmarks/gpu_run.py).
Writes reports/verdict_stability_rerun.json (the second run's verdicts and provenance: commit, preset,
offset, seeds, and a digest of the verdicts they were compared with), so that the report can be
rewritten, and its projections recomputed, without the half-hour re-run; and
reports/verdict_stability.md: how many verdicts changed, which, and whether any reversed
(holds <-> reversed); and how many would be expected to change from image sampling alone, at the
evaluated number of images and at multiples of it (`expected_changes`), which says how far the
image counts are from a stable set of verdicts; and, from both runs' per-seed differences, how many
changes more training seeds or images would leave, training variance included
(`projected_changes_by_family`).

    python benchmarks/verdict_stability.py --expected-only   # only that part, from the committed verdicts
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml
from scipy import stats

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from askknn.io import write_text  # noqa: E402
from askknn.params import preset_config  # noqa: E402
from askknn.stats import ALPHA  # noqa: E402


REPORT = ROOT / "reports" / "verdict_stability.md"
RERUN = ROOT / "reports" / "verdict_stability_rerun.json"
EXPECTED_HEADING = "## Expected changes"


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


def holm_rows(p_values: np.ndarray) -> np.ndarray:
    """Holm-adjusted p-values of every row of a (draws x family) array at once: the same numbers as
    statsmodels' multipletests(method="holm") row by row (a test checks), which costs milliseconds
    per call and would take minutes over thousands of simulated families."""
    m = p_values.shape[1]
    order = np.argsort(p_values, axis=1, kind="stable")
    ranked = np.take_along_axis(p_values, order, axis=1) * (m - np.arange(m))
    adjusted = np.minimum(1.0, np.maximum.accumulate(ranked, axis=1))
    out = np.empty_like(adjusted)
    np.put_along_axis(out, order, adjusted, axis=1)
    return out


def simulated_words(verdict: dict, p_values: np.ndarray, differences: np.ndarray) -> np.ndarray:
    sign = -1 if verdict["direction"] == "lower" else 1
    resolved = (p_values < ALPHA) & (differences != 0)
    return np.where(resolved, np.where(sign * differences > 0, "holds", "reversed"), "not resolved")


def mcnemar_p_values(only_a: np.ndarray, discordant: np.ndarray) -> np.ndarray:
    """The exact two-sided McNemar p-value of `askknn.stats.paired_test` (binomial at 1/2 on the
    discordant images), for arrays of simulated counts at once (a test checks the two agree)."""
    tail = stats.binom.cdf(np.minimum(only_a, discordant - only_a), np.maximum(discordant, 1), 0.5)
    return np.where(discordant > 0, np.minimum(1.0, 2 * tail), 1.0)


def expected_changes_by_family(verdicts: list[dict], scale: float = 1.0, draws: int = 2000,
                               seed: int = 0) -> dict[str, float]:
    """Per family, the expected number of directional verdicts whose word differs between two
    independent evaluations on `scale` times as many images, from image sampling alone: a parametric
    bootstrap of each McNemar test (discordant images ~ Binomial(scale x n, observed rate), split ~
    Binomial(observed share)), Holm within each family as in the report; a verdict whose words come
    out with shares q differs between two evaluations with probability 1 - sum(q^2). Training
    variance is left out (the models are fixed), so re-runs with other training seeds differ
    in at least this many (a lower bound). The verdicts on training methods, pooled over seeds, are
    left to `projected_changes_by_family`, which draws both sources of variance."""
    rng = np.random.default_rng(seed)
    families: dict[str, list[dict]] = {}
    for v in single_run(verdicts):
        families.setdefault(v["family"], []).append(v)
    changes = {}
    for family, members in families.items():
        discordant = [rng.binomial(int(round(scale * v["n"])), (v["only_a"] + v["only_b"]) / v["n"], draws)
                      for v in members]
        only_a = [rng.binomial(d, v["only_a"] / (v["only_a"] + v["only_b"]) if v["only_a"] + v["only_b"] else 0.5)
                  for v, d in zip(members, discordant)]
        adjusted = holm_rows(np.stack([mcnemar_p_values(a, d) for a, d in zip(only_a, discordant)], axis=1))
        changes[family] = 0.0
        for column, (v, a, d) in enumerate(zip(members, only_a, discordant)):
            simulated = simulated_words(v, adjusted[:, column], (2 * a - d).astype(float))   # only_a - only_b
            shares = np.unique(simulated, return_counts=True)[1] / draws
            changes[family] += 1.0 - float(np.sum(shares ** 2))
    return changes


def single_run(verdicts: list[dict]) -> list[dict]:
    """The directional verdicts read off one run's models (not pooled over training seeds)."""
    return [v for v in verdicts if "direction" in v and "seeds" not in v]


def expected_changes(verdicts: list[dict], scale: float = 1.0, draws: int = 2000, seed: int = 0) -> float:
    """The expected number of directional verdicts that differ between two evaluations (all families)."""
    return sum(expected_changes_by_family(verdicts, scale, draws, seed).values())


def expected_section(verdicts: list[dict], scales=(1, 2, 4)) -> list[str]:
    directional = single_run(verdicts)
    count = len(directional)
    lines = [f"{EXPECTED_HEADING} from image sampling alone\n",
             f"From the committed verdicts (`expected_changes`): how many of the {count} directional verdicts "
             "read off one run's models (those on training methods, pooled over seeds, are projected below) "
             "would differ between two evaluations on independent images drawn like the evaluated ones, each "
             "test's observed effect taken as true and the models fixed. Training variance is left out, so two "
             "runs with different training seeds differ in at least as many (the measured count above). "
             "Equivalence verdicts are not counted.\n",
             "| images | expected changes | share |", "|---|---|---|"]
    by_scale = {scale: expected_changes_by_family(verdicts, scale) for scale in scales}
    for scale, by_family in by_scale.items():
        changes = sum(by_family.values())
        lines.append(f"| {scale} x the evaluated | {changes:.1f} | {100 * changes / count:.1f}% |")
    lines += ["", f"Where they come from, at {scales[0]} x the evaluated number of images (n: images per test):\n",
              "| family | verdicts | n | expected changes |",
              "|---|---|---|---|"]
    for family, changes in sorted(by_scale[scales[0]].items(), key=lambda item: -item[1]):
        members = [v for v in directional if v["family"] == family]
        ns = sorted({v["n"] for v in members})
        lines.append(f"| {family} | {len(members)} | {', '.join(map(str, ns))} | {changes:.1f} |")
    return lines + [""]


PROJECTED_HEADING = "## Projected changes"


def seed_effects(first: list[dict], second: list[dict]) -> list[dict]:
    """Per verdict pooled over training seeds (Tables 3 and 5) in both runs: the mean difference `mu`
    over both runs' seeds; `sigma`, the image noise of one seed's difference (a paired difference on
    n_s images with discordance rate q has variance (q - d^2) / n_s, here at least 1 / n_s^2); and
    `tau`, the spread between training seeds beyond it (the method of moments: the per-seed
    differences' variance less the mean image variance, at least 0)."""
    other = {(v["claim"], v["source"]): v for v in second}
    effects = []
    for v in first:
        w = other.get((v["claim"], v["source"]))
        if "seed_differences" not in v or w is None or "seed_differences" not in w:
            continue
        differences, variances = [], []
        for run in (v, w):
            per_seed = run["n"]   # images, the same under every seed
            rate = (run["only_a"] + run["only_b"]) / (run["n"] * run["seeds"])
            differences += run["seed_differences"]
            variances += [max(rate - d ** 2, 1.0 / per_seed) / per_seed for d in run["seed_differences"]]
        differences, noise = np.asarray(differences), float(np.mean(variances))
        tau2 = max(0.0, float(differences.var(ddof=1)) - noise)
        effects.append({"claim": v["claim"], "family": v["family"], "direction": v["direction"],
                        "mu": float(differences.mean()), "tau": tau2 ** 0.5, "sigma": noise ** 0.5,
                        "per_seed": v["n"], "rate": (v["only_a"] + v["only_b"]) / (v["n"] * v["seeds"])})
    return effects


def pooled_words(direction: str, p_holm: np.ndarray, seed_differences: np.ndarray) -> np.ndarray:
    """`askknn.stats.verdict_word` of a pooled verdict for arrays at once (draws x seeds differences):
    resolved when the adjusted p is below the level and every seed's difference has the mean's sign
    (a test checks the two agree)."""
    mean = seed_differences.mean(axis=1)
    agree = np.all(np.sign(seed_differences) == np.sign(mean)[:, None], axis=1) & (mean != 0)
    sign = -1 if direction == "lower" else 1
    resolved = (p_holm < ALPHA) & agree & (seed_differences.shape[1] > 1)
    return np.where(resolved, np.where(sign * mean > 0, "holds", "reversed"), "not resolved")


def seed_t_p_values(differences: np.ndarray) -> np.ndarray:
    """`askknn.stats.seed_test` for arrays at once (draws x seeds differences); 0 for one seed (the
    report then leaves the verdict unresolved whatever its p)."""
    seeds = differences.shape[1]
    if seeds < 2:
        return np.zeros(len(differences))
    mean, spread = differences.mean(axis=1), differences.std(axis=1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.abs(mean) / (spread / np.sqrt(seeds))
    p = 2 * stats.t.sf(t, seeds - 1)
    return np.where(spread > 0, p, np.where(mean != 0, 0.0, 1.0))


def projected_change_chances(effects: list[dict], seeds: int, scale: float = 1.0, draws: int = 2000,
                             seed: int = 0) -> list[float]:
    """Per pooled verdict (in the order of `effects`), the chance that its word differs between two
    runs with `seeds` training seeds each, on `scale` times as many images: every seed's true
    difference drawn around `mu` with sd `tau` (training variance), then its images as in
    `expected_changes_by_family` (discordant ~ Binomial, split by that seed's difference); then the
    report's rule: the larger p of the image test and the t-test over seeds, Holm within the family,
    the seed-agreement rule. The image test is approximated by McNemar's test on the discordant pairs
    summed over the seeds (the draws give no image shared by two seeds): it is the t-test over seeds
    that decides nearly every draw at a few seeds."""
    rng = np.random.default_rng(seed)
    families: dict[str, list[int]] = {}
    for i, e in enumerate(effects):
        families.setdefault(e["family"], []).append(i)
    chances = [0.0] * len(effects)
    for members in families.values():
        only_a, discordant, differences = [], [], []
        for e in (effects[i] for i in members):
            images = int(round(scale * e["per_seed"]))
            true = e["mu"] + e["tau"] * rng.standard_normal((draws, seeds))
            d = rng.binomial(images, e["rate"], (draws, seeds))
            a = rng.binomial(d, np.clip((e["rate"] + true) / (2 * e["rate"]), 0.0, 1.0) if e["rate"] else 0.5)
            only_a.append(a.sum(axis=1))
            discordant.append(d.sum(axis=1))
            differences.append((2 * a - d) / images)
        adjusted = holm_rows(np.stack([np.maximum(mcnemar_p_values(a, d), seed_t_p_values(diff))
                                       for a, d, diff in zip(only_a, discordant, differences)], axis=1))
        for column, (i, diff) in enumerate(zip(members, differences)):
            words = pooled_words(effects[i]["direction"], adjusted[:, column], diff)
            shares = np.unique(words, return_counts=True)[1] / draws
            chances[i] = 1.0 - float(np.sum(shares ** 2))
    return chances


def projected_changes_by_family(effects: list[dict], seeds: int, scale: float = 1.0, draws: int = 2000,
                                seed: int = 0) -> dict[str, float]:
    """Per family, the expected number of pooled verdicts that differ between two such runs."""
    changes: dict[str, float] = {}
    for e, chance in zip(effects, projected_change_chances(effects, seeds, scale, draws, seed)):
        changes[e["family"]] = changes.get(e["family"], 0.0) + chance
    return changes


def projected_section(first: list[dict], second: list[dict], seeds_now: int, seed_counts=(3, 5, 10),
                      scales=(1, 2, 4)) -> list[str]:
    effects = seed_effects(first, second)
    if not effects:
        return []
    directional = [v for v in first if "direction" in v]
    others = [v for v in directional if "seed_differences" not in v]
    lines = [f"{PROJECTED_HEADING} with more training seeds or images\n",
             f"The {len(effects)} verdicts on training methods (Tables 3 and 5) pool {seeds_now} training seeds; "
             f"both runs together give {2 * seeds_now} per-seed differences of each, from which `seed_effects` "
             "takes the mean difference (mu), the image noise of one seed's difference (sigma) and the spread "
             "between training seeds beyond it (tau), all in points; and the chance that two runs like "
             "today's differ on it (as below):\n",
             "| claim | mu | tau | sigma | chance of a change |", "|---|---|---|---|---|"]
    chances = projected_change_chances(effects, seeds_now)
    lines += [f"| {e['claim']} | {100 * e['mu']:+.1f} | {100 * e['tau']:.1f} | {100 * e['sigma']:.1f} | {c:.2f} |"
              for e, c in zip(effects, chances)]
    lines += ["", "`projected_changes_by_family` draws two runs from these (each seed's true difference "
              "around mu with sd tau, its images around that) and counts the verdicts whose word differs, "
              "under the report's rule (the larger p of the image test and the t-test over seeds, Holm, every "
              "seed of the claimed sign; the image test approximated by McNemar's on the summed pairs). The "
              "other verdicts change from image sampling alone as above; Table 7's, read on one seed's model, "
              "also move with that model, which this leaves out, so the totals are lower bounds.\n",
              f"| training seeds | images | training methods | the others | all | share of {len(directional)} |",
              "|---|---|---|---|---|---|"]
    for scale in scales:
        rest = sum(expected_changes_by_family(others, scale).values())
        for count in seed_counts:
            pooled = sum(projected_changes_by_family(effects, count, scale).values())
            lines.append(f"| {count} | {scale} x | {pooled:.1f} | {rest:.1f} | {pooled + rest:.1f} | "
                         f"{100 * (pooled + rest) / len(directional):.1f}% |")
    return lines + [""]


def rerun(run: dict, folder: Path, keep: Path | None = None) -> list[dict]:
    """The second run's verdicts: `run`'s preset with its seeds and attacks.seed raised by its offset,
    in `folder`; with `keep`, its archive (metrics, outcomes, reports) copied there."""
    preset, offset = run["preset"], run["offset"]
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
    seeds = [s + offset for s in run["seeds"]]
    eps = yaml.safe_load((ROOT / "params.yaml").read_text())["eps"]
    subprocess.run([sys.executable, "benchmarks/gpu_run.py", "run", preset, "-S", f"eps={eps}",
                    "-S", f"seeds={seeds}", "--archive", str(folder / "out" / "run.tar.gz")], cwd=folder, check=True)
    if keep is not None:
        keep.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(folder / "out" / "run.tar.gz", keep)
    return json.loads((folder / "metrics" / "verdicts.json").read_text())["verdicts"]


def save_rerun(run: dict, verdicts: list[dict], path: Path = RERUN) -> None:
    write_text(path, json.dumps({"run": run, "verdicts": verdicts}, indent=1) + "\n")


def saved_rerun(first: list[dict], path: Path = RERUN) -> tuple[list[dict], dict]:
    """The verdicts and provenance of a second run saved by `save_rerun`; refused when the committed
    verdicts are no longer the ones that run was compared with."""
    if not path.is_file():
        raise SystemExit(f"{path} is missing: run without --second to re-run the preset (about half an hour)")
    try:
        saved = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise SystemExit(f"{path} is not JSON ({error}): pass a file written by this script") from None
    if not isinstance(saved, dict) or not {"run", "verdicts"} <= saved.keys():
        raise SystemExit(f"{path} holds no second run: pass a file written by this script")
    run = saved["run"]
    if run["first_verdicts"] != verdicts_digest(first):
        raise SystemExit(f"metrics/verdicts.json changed since the run in {path.name} (commit {run['commit']}): "
                         "run without --second to compare with a fresh run")
    return saved["verdicts"], run


def verdicts_digest(verdicts: list[dict]) -> str:
    return hashlib.sha256(json.dumps(verdicts, sort_keys=True).encode()).hexdigest()


def measured_section(rows: list[dict], run: dict, compared: str) -> list[str]:
    changed = [r for r in rows if r["changed"]]
    reversed_ = [r for r in rows if r["reversed"]]
    preset, offset, seeds = run["preset"], run["offset"], run["seeds"]
    lines = ["# Verdict stability\n",
             f"Written by `python benchmarks/verdict_stability.py {compared}`: the `{preset}` preset run again at "
             f"commit {run['commit']} with training seeds {[s + offset for s in seeds]} instead of {seeds} and "
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
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--offset", type=int, help="added to every training seed and to attacks.seed "
                        "(default: the number of training seeds, so the two sets are disjoint)")
    parser.add_argument("--keep", type=Path, metavar="ARCHIVE",
                        help="also keep the second run's files (metrics, outcomes, reports) in this .tar.gz")
    parser.add_argument("--second", type=Path, nargs="?", const=RERUN, metavar="FILE",
                        help=f"no re-run: compare with the second run saved in FILE (default: "
                        f"{RERUN.relative_to(ROOT)}, the committed one)")
    parser.add_argument("--expected-only", action="store_true",
                        help="no re-run: only the expected changes, from the committed verdicts")
    args = parser.parse_args()
    rerun_options = [name for name, value in (("--offset", args.offset), ("--keep", args.keep)) if value is not None]
    if (args.second is not None or args.expected_only) and rerun_options:
        parser.error(f"{' and '.join(rerun_options)}: for a re-run only; drop them, or drop --second "
                     "and --expected-only")
    if args.second is not None and args.expected_only:
        parser.error("--second and --expected-only are two ways of not re-running: choose one")
    first = json.loads((ROOT / "metrics" / "verdicts.json").read_text())["verdicts"]
    if args.expected_only:
        text = REPORT.read_text() if REPORT.exists() else ""
        measured = text.split(EXPECTED_HEADING)[0].rstrip("\n").split("\n") if text else []
        projected = [PROJECTED_HEADING + text.split(PROJECTED_HEADING)[1]] if PROJECTED_HEADING in text else []
        write_text(REPORT, "\n".join(measured + [""] + expected_section(first) + projected))
        print(REPORT.read_text())
        return 0
    if args.second is not None:
        second, run = saved_rerun(first, args.second)
        compared = f"--offset {run['offset']}"
    else:
        top = yaml.safe_load((ROOT / "params.yaml").read_text())
        offset = len(top["seeds"]) if args.offset is None else args.offset
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, check=True, capture_output=True,
                                text=True).stdout.strip()
        run = {"commit": commit, "preset": top["preset"], "offset": offset, "seeds": top["seeds"],
               "first_verdicts": verdicts_digest(first)}
        with tempfile.TemporaryDirectory() as tmp:
            second = rerun(run, Path(tmp), args.keep)
        save_rerun(run, second)
        compared = f"--offset {offset}"
    write_text(REPORT, "\n".join(measured_section(compare(first, second), run, compared) + [""]
                                 + expected_section(first) + projected_section(first, second, len(run["seeds"]))))
    print(REPORT.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
