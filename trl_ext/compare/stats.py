"""Statistics of the comparison: seed means with t-intervals, the paired bootstrap and McNemar's test.

Convention: accuracies are in [0, 1] inside these functions and a *correctness matrix* is ``matrix[seed][problem]``
(1 = the greedy answer was right): one row per seed of one algorithm, every row over the same held-out problems in
the same order. Two algorithms are compared *paired*: their matrices must have the same problems; the seeds are
matched by position (seed ``s`` of A with seed ``s`` of B), which is what the paired bootstrap resamples.
"""

from __future__ import annotations

import math
import statistics

# two-sided 95% quantiles of Student's t for 1..30 degrees of freedom (beyond: the normal 1.96)
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def mean_sd_ci(values) -> dict:
    """Mean, sample sd and the 95% t-interval of the mean over seeds (``None`` where it is not defined)."""
    xs = [float(v) for v in values if v is not None]
    if not xs:
        return {"n": 0, "mean": None, "sd": None, "ci95": None}
    m = statistics.fmean(xs)
    if len(xs) < 2:
        return {"n": 1, "mean": m, "sd": None, "ci95": None}
    sd = statistics.stdev(xs)
    half = (_T95[len(xs) - 2] if len(xs) - 1 <= len(_T95) else 1.96) * sd / math.sqrt(len(xs))
    return {"n": len(xs), "mean": m, "sd": sd, "ci95": (m - half, m + half)}


def _check(a, b) -> None:
    if not a or not b:
        raise ValueError("paired statistics need at least one seed on each side")
    n = len(a[0])
    if any(len(row) != n for row in (*a, *b)):
        raise ValueError("paired statistics need every seed of both sides evaluated on the same problems")


def paired_difference(a, b) -> float:
    """Mean accuracy of ``a`` minus that of ``b`` (each averaged over its seeds and the problems)."""
    _check(a, b)
    return statistics.fmean(map(statistics.fmean, a)) - statistics.fmean(map(statistics.fmean, b))


def paired_bootstrap(a, b, draws: int = 10_000, seed: int = 0) -> dict:
    """Paired bootstrap of ``mean(a) - mean(b)`` over problems x seeds.

    Each draw resamples the problems (the same problem indices for both sides, which keeps the pairing) and the
    seeds (with replacement, for each side), and recomputes the difference. Returns the observed difference, the 95%
    percentile interval and a two-sided p-value: twice the share of draws on the far side of 0 (at most 1)."""
    _check(a, b)
    import numpy as np

    rng = np.random.default_rng(seed)
    A, B = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    n = A.shape[1]
    problems = rng.integers(0, n, size=(draws, n))
    # per seed and draw: the accuracy on that draw's problems; then each draw's resampled seeds are averaged
    per_a, per_b = A[:, problems].mean(axis=2), B[:, problems].mean(axis=2)  # (seeds, draws)
    pick_a = rng.integers(0, len(A), size=(draws, len(A)))
    pick_b = rng.integers(0, len(B), size=(draws, len(B)))
    cols = np.arange(draws)[:, None]
    diffs = np.sort(per_a[pick_a, cols].mean(axis=1) - per_b[pick_b, cols].mean(axis=1))
    lo, hi = diffs[int(0.025 * draws)], diffs[min(draws - 1, int(0.975 * draws))]
    below, above = float((diffs <= 0).mean()), float((diffs >= 0).mean())
    return {"difference": paired_difference(a, b), "ci95": (float(lo), float(hi)), "p": min(1.0, 2 * min(below, above)),
            "se": float(diffs.std(ddof=1)), "draws": draws}


# z quantiles: two-sided 5% test, 80% power
_Z_ALPHA, _Z_POWER = 1.959964, 0.841621


def detectable_difference(se: float) -> float:
    """The smallest true difference a two-sided 5% test with standard error ``se`` detects with 80% power:
    ``(z_0.975 + z_0.8) * se`` (about 2.8 standard errors; normal approximation)."""
    return (_Z_ALPHA + _Z_POWER) * se


def mcnemar_exact(a_row, b_row) -> dict:
    """Exact (binomial) McNemar test of one seed pair on the same problems: ``b01`` = problems only B got right,
    ``b10`` = only A; p = two-sided binomial tail of min(b01, b10) out of b01 + b10 at 1/2."""
    if len(a_row) != len(b_row):
        raise ValueError("McNemar needs both rows on the same problems")
    b10 = sum(1 for x, y in zip(a_row, b_row) if x and not y)
    b01 = sum(1 for x, y in zip(a_row, b_row) if y and not x)
    n, k = b10 + b01, min(b10, b01)
    p = 1.0 if n == 0 else min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n)
    return {"only_a": b10, "only_b": b01, "p": p}


def crossing_bracket(points, threshold: float, x_key: str) -> tuple[float, float, float] | None:
    """Where a curve first reaches ``threshold``: ``(low, high, estimate)`` with ``high`` the ``x_key`` of the first
    point at or above it, ``low`` that of the point before (the crossing lies between the two: the curve's spacing),
    and ``estimate`` the linear interpolation between them. A curve already there at its first point gives
    ``(x, x, x)``; one that never reaches it, ``None``."""
    previous = None
    for p in points:
        if p["flexible"] >= threshold:
            x = float(p[x_key])
            if previous is None:
                return x, x, x
            x0, y0 = float(previous[x_key]), previous["flexible"]
            estimate = x0 + (x - x0) * (threshold - y0) / (p["flexible"] - y0) if p["flexible"] > y0 else x
            return x0, x, estimate
        previous = p
    return None


def crossing_interval(brackets) -> dict:
    """Over seeds' ``crossing_bracket`` results: the mean interpolated crossing and a 95% interval that holds both
    the seed spread and the curve spacing: from the t-interval's lower end of the seeds' ``low`` ends to the upper
    end of their ``high`` ends, never below 0 (samples and seconds are not negative). ``None`` entries (seeds that
    never reached the threshold) are left out; ``n`` counts the rest."""
    kept = [b for b in brackets if b is not None]
    if not kept:
        return {"n": 0, "mean": None, "sd": None, "ci95": None}
    est = mean_sd_ci([b[2] for b in kept])
    lows, highs = mean_sd_ci([b[0] for b in kept]), mean_sd_ci([b[1] for b in kept])
    lo = lows["ci95"][0] if lows["ci95"] else lows["mean"]
    hi = highs["ci95"][1] if highs["ci95"] else highs["mean"]
    return {**est, "ci95": (max(0.0, lo), max(0.0, hi))}
