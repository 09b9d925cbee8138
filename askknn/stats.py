"""The statistics behind every number and verdict in the reports (scipy, nothing hand-rolled).

- `proportion`: an accuracy with its n and Wilson 95% interval.
- `paired_test`: exact McNemar test of two classifiers (or attacks) scored on the same images: a
  two-sided binomial test on the discordant pairs.
- `claim_verdict`: reads a paired test as `holds`, `reversed` or `not resolved at n = ...` for a
  directional claim ("A is lower than B").
- `equivalence_verdict`: a paired bootstrap interval of the difference against a margin, for
  claims of the form "A is within m points of B".
- `auroc`: the area under the ROC curve of a score separating two groups, from the Mann-Whitney U
  statistic (ties count one half), with its one-sided p-value.

- `pooled_claim_verdict`: a directional claim about two training methods, each trained under the
  same training seeds and scored on the same images: the seed-stratified exact McNemar test (the
  discordant pairs of every seed pooled; under equality each is equally likely to go either way),
  and `holds` only if, besides, every seed's difference has the claimed sign and there are at least
  two seeds (one training run cannot speak for the training method).
- `seed_mean`: the mean of per-seed accuracies with a t-interval over seeds (training variance).
- `holm`: Holm's step-down correction of a family of directional verdicts (statsmodels): each
  verdict is then read at family-wise level `ALPHA` with its adjusted p-value.

The report corrects within each table's family of directional verdicts (Holm); an equivalence
verdict ("within m points") is an interval, read on its own.
"""
from __future__ import annotations

import numpy as np
from scipy import stats

ALPHA = 0.05
CONFIDENCE = 0.95


def as_bool(outcomes) -> np.ndarray:
    return np.asarray(outcomes, dtype=bool)


def proportion(outcomes) -> dict:
    """Mean of 0/1 outcomes with n and the Wilson 95% interval."""
    ok = as_bool(outcomes)
    return proportion_of(int(ok.sum()), len(ok))


def proportion_of(k: int, n: int) -> dict:
    """k successes of n, with n and the Wilson 95% interval."""
    if n == 0:
        raise ValueError("no outcomes: an accuracy needs at least one image")
    ci = stats.binomtest(k, n).proportion_ci(CONFIDENCE, method="wilson")
    return {"accuracy": k / n, "n": n, "ci95": [float(ci.low), float(ci.high)]}


def paired_test(a, b) -> dict:
    """Exact McNemar test of outcomes a and b on the same images (a[i], b[i] for image i)."""
    a, b = as_bool(a), as_bool(b)
    if a.shape != b.shape:
        raise ValueError(f"paired outcomes need the same images: {a.shape} against {b.shape}")
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    p = stats.binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
    return {"n": int(len(a)), "difference": float(a.mean() - b.mean()), "only_a": only_a, "only_b": only_b,
            "p_value": float(p)}


def verdict_word(test: dict, claim: str, p_value: float) -> str:
    """`holds`, `reversed` or `not resolved at n = ...` for a directional claim at level ALPHA; a
    pooled test over training seeds also needs every seed's difference to have the same sign, and at
    least two seeds: one training run says nothing of training variance, whatever its p-value."""
    if p_value >= ALPHA or test["difference"] == 0:
        return f"not resolved at n = {test['n']}"
    if test.get("seeds") == 1:
        return f"not resolved at n = {test['n']} (one training run)"
    if not test.get("seeds_agree", True):
        return f"not resolved at n = {test['n']} (not every seed's difference has one and the same non-zero sign)"
    sign = -1 if claim == "lower" else 1
    return "holds" if sign * test["difference"] > 0 else "reversed"


def claim_verdict(a, b, claim: str) -> dict:
    """Test the claim that accuracy a is `lower` (or `higher`) than b, paired on the same images."""
    if claim not in ("lower", "higher"):
        raise ValueError(f"claim = {claim!r}; choose lower or higher")
    test = paired_test(a, b)
    return {**test, "claim": claim, "verdict": verdict_word(test, claim, test["p_value"])}


def pooled_claim_verdict(pairs: list[tuple], claim: str) -> dict:
    """The claim that accuracy a is `lower` (or `higher`) than b, from (a, b) outcome pairs, one per
    training seed (a and b of a pair scored on the same images): seed-stratified exact McNemar test,
    plus agreement in sign of every seed's difference (see the module docstring)."""
    if claim not in ("lower", "higher"):
        raise ValueError(f"claim = {claim!r}; choose lower or higher")
    tests = [paired_test(a, b) for a, b in pairs]
    only_a, only_b = sum(t["only_a"] for t in tests), sum(t["only_b"] for t in tests)
    p = stats.binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
    differences = [t["difference"] for t in tests]
    pooled = {"n": sum(t["n"] for t in tests), "seeds": len(tests), "difference": float(np.mean(differences)),
              "seed_differences": differences, "only_a": only_a, "only_b": only_b, "p_value": float(p),
              "seeds_agree": bool(all(np.sign(d) == np.sign(np.mean(differences)) != 0 for d in differences))}
    return {**pooled, "claim": claim, "verdict": verdict_word(pooled, claim, pooled["p_value"])}


def seed_mean(accuracies) -> dict:
    """The mean of per-seed accuracies and its 95% t-interval over the seeds, clipped to [0, 1] (None
    for one seed)."""
    values = np.asarray(accuracies, dtype=float)
    mean = float(values.mean())
    if len(values) < 2:
        return {"accuracy": mean, "seeds": len(values), "ci95": None}
    low, high = stats.t.interval(CONFIDENCE, len(values) - 1, loc=mean, scale=stats.sem(values)) \
        if values.std() > 0 else (mean, mean)
    return {"accuracy": mean, "seeds": len(values), "ci95": [max(0.0, float(low)), min(1.0, float(high))]}


def holm(verdicts: list[dict]) -> list[dict]:
    """The directional verdicts of one family, each with `p_holm` (Holm-adjusted), `family_size`
    and its verdict read from the adjusted p-value."""
    from statsmodels.stats.multitest import multipletests
    if not verdicts:
        return []
    adjusted = multipletests([v["p_value"] for v in verdicts], alpha=ALPHA, method="holm")[1]
    return [{**v, "p_holm": float(p), "family_size": len(verdicts), "verdict": verdict_word(v, v["claim"], p)}
            for v, p in zip(verdicts, adjusted)]


def equivalence_verdict(a, b, margin: float, seed: int = 0) -> dict:
    """The claim |acc(a) - acc(b)| <= margin: `holds` if the paired bootstrap 95% interval of the
    difference lies inside the margin, `reversed` if it lies wholly outside, else not resolved."""
    a, b = as_bool(a).astype(float), as_bool(b).astype(float)
    ci = stats.bootstrap((a, b), lambda x, y, axis=-1: x.mean(axis) - y.mean(axis), paired=True,
                         confidence_level=CONFIDENCE, n_resamples=2000, method="percentile",
                         random_state=np.random.default_rng(seed)).confidence_interval
    low, high = float(ci.low), float(ci.high)
    if -margin <= low and high <= margin:
        word = "holds"
    elif high < -margin or low > margin:
        word = "reversed"
    else:
        word = f"not resolved at n = {len(a)}"
    return {"n": int(len(a)), "difference": float(a.mean() - b.mean()), "ci95": [low, high], "margin": margin,
            "verdict": word}


def auroc(high, low) -> dict:
    """P(a score of `high` > a score of `low`) + P(tie) / 2, and the Mann-Whitney test that the
    `high` group scores higher; None when a group is empty."""
    high, low = np.asarray(high, dtype=float), np.asarray(low, dtype=float)
    if not len(high) or not len(low):
        return {"auroc": None, "n_high": int(len(high)), "n_low": int(len(low)), "p_value": None}
    test = stats.mannwhitneyu(high, low, alternative="greater")
    return {"auroc": float(test.statistic / (len(high) * len(low))), "n_high": int(len(high)),
            "n_low": int(len(low)), "p_value": float(test.pvalue)}


def pack(outcomes) -> str:
    """0/1 outcomes as a string of '0' and '1' (one character per image, in evaluation order)."""
    return "".join("1" if v else "0" for v in as_bool(outcomes))


def unpack(text: str) -> np.ndarray:
    return np.frombuffer(text.encode(), dtype=np.uint8) == ord("1")
