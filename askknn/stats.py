"""The statistics behind every number and verdict in the reports (scipy and statsmodels; Tango's
interval, which neither has, is its closed-form score solved with scipy's root finder).

- `proportion`: an accuracy with its n and Wilson 95% interval.
- `paired_test`: exact McNemar test of two classifiers (or attacks) scored on the same images: a
  two-sided binomial test on the discordant pairs.
- `claim_verdict`: reads a paired test as `holds`, `reversed` or `not resolved at n = ...` for a
  directional claim ("A is lower than B").
- `equivalence_verdict`: Tango's score interval of the paired difference against a margin, for
  claims of the form "A is within m points of B".
- `auroc`: the area under the ROC curve of a score separating two groups, from the Mann-Whitney U
  statistic (ties count one half), with its one-sided p-value.

- `pooled_claim_verdict`: a directional claim about two training methods, each trained under the
  same training seeds and scored on the same images. Two sources of variance, two tests: the images
  (an exact sign test with the image as the unit: each image's difference summed over the seeds,
  since the seeds share their images and an image that favours one method tends to do so under
  every seed) and the training seeds (a one-sample t-test of the per-seed differences). Its p-value
  is the larger of the two (an intersection-union test: the claim must survive both), and it
  `holds` only if, besides, every seed's difference has the claimed sign and there are at least two
  seeds (one training run cannot speak for the training method).
- `seed_mean`: the mean of per-seed accuracies with a t-interval over seeds (training variance).
- `holm`: Holm's step-down correction of a family of directional verdicts (statsmodels): each
  verdict is then read at family-wise level `ALPHA` with its adjusted p-value.

The report corrects within each table's family of directional verdicts (Holm); an equivalence
verdict ("within m points") is an interval, read on its own.
"""
from __future__ import annotations

import numpy as np
from scipy import optimize, stats

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
    return {"n": int(len(a)), "difference": float(a.mean() - b.mean()), "only_a": only_a, "only_b": only_b,
            "p_value": sign_test(only_a, only_b)}


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact sign test: `wins` against `losses` under equal chances (ties left out); on the
    discordant pairs of two columns it is McNemar's exact test."""
    return float(stats.binomtest(wins, wins + losses, 0.5).pvalue) if wins + losses else 1.0


def sample_size(test: dict) -> str:
    """`n = 800`, or `n = 800 images x 3 seeds` for a test pooled over training seeds."""
    return f"n = {test['n']}" + (f" images x {test['seeds']} seeds" if test.get("seeds", 1) > 1 else "")


def verdict_word(test: dict, claim: str, p_value: float) -> str:
    """`holds`, `reversed` or `not resolved at n = ...` for a directional claim at level ALPHA; a
    pooled test over training seeds also needs every seed's difference to have the same sign, and at
    least two seeds: one training run says nothing of training variance, whatever its p-value."""
    if test.get("seeds") == 1:
        return f"not resolved at {sample_size(test)} (one training run)"
    if p_value >= ALPHA or test["difference"] == 0:
        return f"not resolved at {sample_size(test)}"
    if not test.get("seeds_agree", True):
        return f"not resolved at {sample_size(test)} (not every seed's difference has one and the same non-zero sign)"
    sign = -1 if claim == "lower" else 1
    return "holds" if sign * test["difference"] > 0 else "reversed"


def claim_verdict(a, b, claim: str) -> dict:
    """Test the claim that accuracy a is `lower` (or `higher`) than b, paired on the same images."""
    if claim not in ("lower", "higher"):
        raise ValueError(f"claim = {claim!r}; choose lower or higher")
    test = paired_test(a, b)
    return {**test, "claim": claim, "verdict": verdict_word(test, claim, test["p_value"])}


def seed_test(differences) -> float | None:
    """Two-sided one-sample t-test that the per-seed differences average 0 (None for one seed;
    identical differences: 1 if they are 0, else 0, the limit of the test)."""
    d = np.asarray(differences, dtype=float)
    if len(d) < 2:
        return None
    if np.ptp(d) == 0:
        return 1.0 if d[0] == 0 else 0.0
    return float(stats.ttest_1samp(d, 0.0).pvalue)


def pooled_claim_verdict(pairs: list[tuple], claim: str) -> dict:
    """The claim that accuracy a is `lower` (or `higher`) than b, from (a, b) outcome pairs, one per
    training seed, every pair scored on the same images in the same order: the per-image sign test
    and the t-test over seeds, p the larger, plus agreement in sign of every seed's difference (see
    the module docstring). `only_a` / `only_b`: the discordant pairs summed over the seeds."""
    if claim not in ("lower", "higher"):
        raise ValueError(f"claim = {claim!r}; choose lower or higher")
    sizes = sorted({len(x) for pair in pairs for x in pair})
    if len(sizes) > 1:
        raise ValueError(f"pooled outcomes need the same images under every seed: got {sizes} images")
    a, b = (np.stack([as_bool(x) for x in column]) for column in zip(*pairs))
    tests = [paired_test(x, y) for x, y in zip(a, b)]
    per_image = (a.astype(int) - b.astype(int)).sum(0)
    favouring = [int((per_image > 0).sum()), int((per_image < 0).sum())]
    p_images = sign_test(*favouring)
    differences = [t["difference"] for t in tests]
    p_seeds = seed_test(differences)
    mean = float(np.mean(differences))
    pooled = {"n": int(a.shape[1]), "seeds": len(tests), "difference": mean, "seed_differences": differences,
              "only_a": sum(t["only_a"] for t in tests), "only_b": sum(t["only_b"] for t in tests),
              "images_favouring": favouring,
              "p_images": p_images, "p_seeds": p_seeds,
              "p_value": p_images if p_seeds is None else max(p_images, p_seeds),
              "seeds_agree": bool(all(np.sign(d) == np.sign(mean) != 0 for d in differences))}
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


def tango_interval(only_a: int, only_b: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Tango's (1998) asymptotic score interval for the difference of two paired proportions, acc(a)
    - acc(b), from the discordant counts of n pairs: the deltas whose score statistic
    (only_a - only_b - n delta) / sqrt(n (2 q + delta (1 - delta))), q the maximum-likelihood share of
    `only_b` pairs under that delta, lies within the normal quantile. Unlike a bootstrap it does not
    collapse to a point when the two never disagree (then +-z^2 / (n + z^2)); recommended for paired
    differences by Fagerland, Lydersen & Laake (2014)."""
    if n < 1:
        raise ValueError("no pairs: an interval of a paired difference needs at least one image")
    z = float(stats.norm.ppf(0.5 + confidence / 2))

    def score(delta: float) -> float:
        quad_b = -only_a - only_b + (2 * n - only_a + only_b) * delta
        quad_c = -only_b * delta * (1 - delta)
        q = (np.sqrt(max(quad_b ** 2 - 8 * n * quad_c, 0.0)) - quad_b) / (4 * n)
        return (only_a - only_b - n * delta) / np.sqrt(max(n * (2 * q + delta * (1 - delta)), 1e-300))

    estimate = (only_a - only_b) / n

    def bound(target: float, limit: float) -> float:
        """The delta between the estimate and the limit (-1 or 1) where the score meets `target`;
        the limit itself where it never does."""
        end = limit * (1 - 1e-12)
        if (score(end) - target) * (score(estimate) - target) > 0:
            return limit
        return float(optimize.brentq(lambda d: score(d) - target, *sorted((estimate, end))))
    return bound(z, -1.0), bound(-z, 1.0)


def equivalence_verdict(a, b, margin: float) -> dict:
    """The claim |acc(a) - acc(b)| <= margin: `holds` if Tango's 95% interval of the paired difference
    lies inside the margin, `reversed` if it lies wholly outside, else not resolved."""
    test = paired_test(a, b)
    low, high = tango_interval(test["only_a"], test["only_b"], test["n"])
    if -margin <= low and high <= margin:
        word = "holds"
    elif high < -margin or low > margin:
        word = "reversed"
    else:
        word = f"not resolved at n = {test['n']}"
    return {"n": test["n"], "difference": test["difference"], "ci95": [low, high], "margin": margin,
            "interval": "Tango score", "verdict": word}


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
