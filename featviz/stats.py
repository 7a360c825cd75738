"""The statistics of an ablation: a mean with its t interval, a paired comparison of two arms, and
the correction across a table of comparisons.

A sweep's claim ("tv=0.25 lowers hf_share by X") needs an interval, a test and an honest n, and
at the n a sweep has (6 seeds) a percentile bootstrap is too narrow (it covered a known effect
in about 86 % of 6-pair simulations instead of 95 %). So:

* :func:`mean_ci`: the mean with its Student-t interval (``scipy.stats.t``);
* :func:`paired`: arm B minus arm A over pairs (the same seed / unit / class with and without the
  setting, which removes the seed-to-seed spread): the **paired t-test** with its own interval
  (:func:`scipy.stats.ttest_rel`, ``confidence_interval``), so the test and the interval agree by
  construction (p < 0.05 exactly when the 95 % interval excludes 0); the **Wilcoxon signed-rank**
  p beside it (:func:`scipy.stats.wilcoxon`, exact for small n) as the check that does not assume
  normal differences; Cohen's d_z; and the pairs needed for 80 % power at this d_z from the
  noncentral t (:data:`scipy.stats.nct`), never fewer than :data:`MIN_PAIRS`;
* :func:`adjust`: Holm's step-down adjustment (family-wise error) and Benjamini-Hochberg's
  (:func:`scipy.stats.false_discovery_control`, false discovery rate) across a table's rows.

``tests/test_stats.py`` measures coverage, agreement and the starred share by simulation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
ALPHA = 1 - CONFIDENCE
POWER = 0.8  # the power "pairs needed" is computed for
#: The smallest number of pairs at which the two-sided signed-rank check can reach p < 0.05 (n = 5 gives
#: 0.0625): a comparison is starred only from here, so the robust check could agree.
MIN_PAIRS = 6
#: How the Effects table is corrected: Holm (family-wise error over the table); BH q values are shown beside.
CORRECTION = "holm"


@dataclass(frozen=True)
class Interval:
    """A mean and its t confidence interval (``nan`` bounds below two values)."""

    mean: float
    low: float
    high: float
    n: int


@dataclass(frozen=True)
class Paired:
    """Arm B minus arm A over ``n`` pairs: the mean difference, its interval, the tests and the effect size."""

    diff: Interval  # mean difference and the paired t-test's interval
    p_value: float  # two-sided paired t-test; nan when it cannot be computed (n < 2, all differences equal)
    effect_size: float  # Cohen's d_z: mean difference / standard deviation of the differences
    pairs_needed: int | None  # pairs for 80 % power at this d_z (noncentral t), at least MIN_PAIRS
    note: str  # "" or why the comparison cannot tell
    p_wilcoxon: float = math.nan  # two-sided signed-rank p, the robust check
    p_adjusted: float = math.nan  # p after the table's correction (Holm); nan until :func:`adjust` ran
    q_value: float = math.nan  # Benjamini-Hochberg adjusted p over the same family

    @property
    def significant(self) -> bool:
        """Starred: the corrected p (the raw p when no correction ran) below 0.05, with n >= MIN_PAIRS."""
        p = self.p_adjusted if math.isfinite(self.p_adjusted) else self.p_value
        return math.isfinite(p) and p < ALPHA and self.diff.n >= MIN_PAIRS


def _finite(values: Sequence[float | None]) -> np.ndarray:
    return np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)


def mean_ci(values: Sequence[float | None], seed: int = 0, confidence: float = CONFIDENCE) -> Interval:
    """The mean of ``values`` with its Student-t interval (``seed`` is kept for callers; the interval is exact)."""
    data = _finite(values)
    n = len(data)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = float(data.mean())
    if n < 2:
        return Interval(mean, math.nan, math.nan, n)
    sem = float(data.std(ddof=1)) / math.sqrt(n)
    if sem == 0:
        return Interval(mean, mean, mean, n)
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sem
    return Interval(mean, mean - half, mean + half, n)


def pairs_needed(d_z: float, power: float = POWER, alpha: float = ALPHA, most: int = 1_000_000) -> int | None:
    """The smallest n >= MIN_PAIRS at which a two-sided paired t-test at ``alpha`` detects ``d_z`` with ``power``
    (noncentral t with n-1 degrees of freedom and noncentrality d_z sqrt(n)); None for d_z 0 or not finite."""
    if not math.isfinite(d_z) or d_z == 0:
        return None
    d = abs(d_z)
    # the normal approximation's n is a lower bound for the t-test's: search up from it
    start = max(2, int(((stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)) / d) ** 2))
    while start <= most:
        n = np.arange(start, min(most, start + 32) + 1)
        crit = stats.t.ppf(1 - alpha / 2, n - 1)
        reach = stats.nct.sf(crit, n - 1, d * np.sqrt(n)) + stats.nct.cdf(-crit, n - 1, d * np.sqrt(n))
        ok = np.nonzero(reach >= power)[0]
        if len(ok):
            return max(MIN_PAIRS, int(n[ok[0]]))
        start = int(n[-1]) + 1
    return None


def paired(a: Sequence[float | None], b: Sequence[float | None], seed: int = 0) -> Paired:
    """Compare arm ``b`` with arm ``a``, element by element (the same seed / unit / class at each index)."""
    pairs = [(x, y) for x, y in zip(a, b) if x is not None and y is not None and math.isfinite(x) and math.isfinite(y)]
    x = np.asarray([p[0] for p in pairs], dtype=float)
    y = np.asarray([p[1] for p in pairs], dtype=float)
    d = y - x
    n = len(d)
    mean = float(d.mean()) if n else math.nan
    sd = float(d.std(ddof=1)) if n >= 2 else math.nan
    if n >= 2 and sd <= 1e-12 * max(1.0, abs(mean)):  # equal up to rounding: no spread to test against
        sd = 0.0
    p = p_w = math.nan
    low = high = math.nan
    if n >= 2 and sd > 0:
        res = stats.ttest_rel(y, x)
        ci = res.confidence_interval(CONFIDENCE)
        p, low, high = float(res.pvalue), float(ci.low), float(ci.high)
    elif n >= 2:  # every difference equal: no spread to test against
        low = high = mean
    if n >= 1 and np.any(d != 0):
        p_w = float(stats.wilcoxon(d, alternative="two-sided").pvalue)
    if n >= 2 and sd > 0:
        effect = mean / sd
    else:
        effect = math.inf * np.sign(mean) if n >= 2 and mean != 0 else math.nan
    note = ""
    if n < MIN_PAIRS:
        note = f"n={n} pairs: too few to star (the signed-rank check needs >= {MIN_PAIRS} to reach p<0.05); add seeds or units"
    elif n >= 2 and not np.any(d != 0):
        note = "every difference is 0"
    elif n >= 2 and sd == 0:
        note = "every difference is the same: no spread to test"
    return Paired(Interval(mean, low, high, n), p, float(effect), pairs_needed(float(effect)), note, p_wilcoxon=p_w)


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p values (nan stays nan and is not counted in the family)."""
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    m = int(ok.sum())
    if m:
        order = np.argsort(p[ok], kind="stable")
        scaled = np.maximum.accumulate(p[ok][order] * (m - np.arange(m)))
        adjusted = np.empty(m)
        adjusted[order] = np.minimum(scaled, 1.0)
        out[ok] = adjusted
    return out


def bh(p_values: Sequence[float]) -> np.ndarray:
    """Benjamini-Hochberg adjusted p values (q values) via :func:`scipy.stats.false_discovery_control`."""
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = stats.false_discovery_control(p[ok], method="bh")
    return out


def adjust(results: Sequence[Paired]) -> list[Paired]:
    """``results`` with ``p_adjusted`` (Holm) and ``q_value`` (BH) over the family of all of them that have a p."""
    ps = [r.p_value for r in results]
    return [replace(r, p_adjusted=float(h), q_value=float(q)) for r, h, q in zip(results, holm(ps), bh(ps))]
