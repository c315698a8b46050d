"""Statistics that decide: means with t-based 95 % confidence intervals, paired differences, verdicts.

Everything here works on plain sequences of floats (one value per independent run, e.g. per seed) and
uses `scipy.stats.t` for the intervals. A difference is called only where its confidence interval
excludes 0; otherwise the verdict says that the runs cannot tell the two apart.

    >>> summary = mean_ci([0.61, 0.58, 0.66])
    >>> round(summary.mean, 3), round(summary.ci95, 3)
    (0.617, 0.1)
    >>> verdict(paired([0.6, 0.7, 0.65], [0.5, 0.55, 0.52]), "MetaIQA", "baseline")
    'MetaIQA better'
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats

NOT_DISTINGUISHABLE = "not distinguishable at this budget"
"""The verdict where the confidence interval of a difference contains 0 (or is undefined)."""


@dataclass(frozen=True)
class MeanCI:
    """The mean of `values` and the half-width `ci95` of its two-sided confidence interval (t-distribution,
    n - 1 degrees of freedom): the interval is mean ± ci95. With one value, or any NaN, `ci95` is NaN."""

    mean: float
    ci95: float
    values: tuple[float, ...]
    level: float = 0.95

    @property
    def low(self) -> float:
        return self.mean - self.ci95

    @property
    def high(self) -> float:
        return self.mean + self.ci95

    def excludes_zero(self) -> bool:
        """True when the whole interval lies on one side of 0 (False when it is undefined)."""
        return not math.isnan(self.ci95) and (self.low > 0 or self.high < 0)

    def as_dict(self) -> dict[str, object]:
        """`{"mean", "ci95", "per_seed"}`: the form reports store (NaN stays NaN; writers map it to null)."""
        return {"mean": self.mean, "ci95": self.ci95, "per_seed": list(self.values)}


def ci_half_width(values: Sequence[float], level: float = 0.95) -> float:
    """Half-width of the two-sided `level` confidence interval of the mean: t_{(1+level)/2, n-1} * s / sqrt(n).

    NaN for fewer than two values or any NaN among them (no interval can be stated).
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    floats = [float(v) for v in values]
    n = len(floats)
    if n < 2 or any(math.isnan(v) for v in floats):
        return math.nan
    mean = math.fsum(floats) / n
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in floats) / (n - 1))
    return float(stats.t.ppf((1.0 + level) / 2.0, n - 1)) * sd / math.sqrt(n)


def mean_ci(values: Sequence[float], level: float = 0.95) -> MeanCI:
    """Mean and t-based confidence half-width of `values` (NaN mean if any value is NaN or none given)."""
    floats = tuple(float(v) for v in values)
    mean = math.fsum(floats) / len(floats) if floats else math.nan
    if any(math.isnan(v) for v in floats):
        mean = math.nan
    return MeanCI(mean, ci_half_width(floats, level), floats, level)


def paired(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> MeanCI:
    """The paired differences a_i - b_i (same seed, same split for both) with their mean and CI.

    This is the paired t-interval: the runs share their data split and sampling, so the per-run difference
    removes what the runs have in common and is the quantity to test.
    """
    if len(a) != len(b):
        raise ValueError(f"paired values need equal lengths, got {len(a)} and {len(b)}")
    return mean_ci([float(x) - float(y) for x, y in zip(a, b)], level)


def verdict(difference: MeanCI, a: str = "A", b: str = "B") -> str:
    """`"<a> better"` where the interval of a - b lies above 0, `"<b> better"` where below, otherwise
    `NOT_DISTINGUISHABLE` (the interval contains 0, or there are too few runs to state one)."""
    if not difference.excludes_zero():
        return NOT_DISTINGUISHABLE
    return f"{a} better" if difference.mean > 0 else f"{b} better"
