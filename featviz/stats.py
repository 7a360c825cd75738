"""The statistics of an ablation: a mean with its bootstrap interval, and a paired comparison of two arms.

A sweep's claim ("tv=0.25 lowers hf_share by X") needs an interval, a test and an honest n.
SciPy does the work: :func:`scipy.stats.bootstrap` (percentile intervals, a seeded generator, so
a report is the same twice) and :func:`scipy.stats.wilcoxon` (the signed-rank test of paired
differences, exact for small n). Arms are paired over what they share (seed, unit, class):
the same seed's image with and without the setting, which removes the seed-to-seed spread.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
RESAMPLES = 4000
#: The smallest number of pairs at which a two-sided signed-rank test can reach p < 0.05 (n = 5 gives 0.0625).
MIN_PAIRS = 6


@dataclass(frozen=True)
class Interval:
    """A mean and its bootstrap confidence interval (``nan`` bounds below two values)."""

    mean: float
    low: float
    high: float
    n: int


@dataclass(frozen=True)
class Paired:
    """Arm B minus arm A over ``n`` pairs: the mean difference, its interval, the test and the effect size."""

    diff: Interval
    p_value: float  # two-sided Wilcoxon signed-rank; nan when it cannot be computed (n < 1, all differences 0)
    effect_size: float  # Cohen's d_z: mean difference / standard deviation of the differences
    pairs_needed: int | None  # pairs at which this mean and spread would give a 95 % interval excluding 0
    note: str  # "" or why the comparison cannot tell

    @property
    def significant(self) -> bool:
        return math.isfinite(self.p_value) and self.p_value < 1 - CONFIDENCE and self.diff.n >= MIN_PAIRS


def mean_ci(values: Sequence[float], seed: int = 0, confidence: float = CONFIDENCE, resamples: int = RESAMPLES) -> Interval:
    """The mean of ``values`` with a percentile bootstrap interval (seeded: the same input gives the same interval)."""
    data = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    n = len(data)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = float(data.mean())
    if n < 2:
        return Interval(mean, math.nan, math.nan, n)
    if np.ptp(data) == 0:
        return Interval(mean, mean, mean, n)
    res = stats.bootstrap((data,), np.mean, confidence_level=confidence, n_resamples=resamples, method="percentile", rng=np.random.default_rng(seed))
    return Interval(mean, float(res.confidence_interval.low), float(res.confidence_interval.high), n)


def paired(a: Sequence[float], b: Sequence[float], seed: int = 0) -> Paired:
    """Compare arm ``b`` with arm ``a``, element by element (the same seed / unit / class at each index)."""
    pairs = [(x, y) for x, y in zip(a, b) if x is not None and y is not None and math.isfinite(x) and math.isfinite(y)]
    d = np.asarray([y - x for x, y in pairs], dtype=float)
    diff = mean_ci(d, seed)
    n = len(d)
    sd = float(d.std(ddof=1)) if n >= 2 else math.nan
    effect = diff.mean / sd if n >= 2 and sd > 0 else (math.inf * np.sign(diff.mean) if n >= 2 and diff.mean != 0 else math.nan)
    p = math.nan
    if n >= 1 and np.any(d != 0):
        p = float(stats.wilcoxon(d, alternative="two-sided").pvalue)
    needed = None
    if n >= 2 and sd > 0 and diff.mean != 0:
        needed = max(2, math.ceil((stats.norm.ppf(0.5 + CONFIDENCE / 2) * sd / abs(diff.mean)) ** 2))
    note = ""
    if n < MIN_PAIRS:
        note = f"n={n} pairs: too few for the signed-rank test to reach p<0.05 (needs >= {MIN_PAIRS}); add seeds or units"
    elif not math.isfinite(p):
        note = "every difference is 0"
    return Paired(diff, p, float(effect), needed, note)
