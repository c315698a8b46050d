"""`metalearn.stats` against scipy's own t-interval and paired t-test."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from metalearn.stats import NOT_DISTINGUISHABLE, ci_half_width, mean_ci, paired, verdict


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("n", [2, 3, 5, 11])
def test_interval_matches_scipy_t_interval(seed: int, n: int) -> None:
    values = np.random.default_rng(seed).normal(0.4, 0.2, n)
    low, high = sps.t.interval(0.95, n - 1, loc=values.mean(), scale=sps.sem(values))
    summary = mean_ci(values.tolist())
    assert summary.mean == pytest.approx(values.mean(), abs=1e-12)
    assert summary.low == pytest.approx(low, abs=1e-12)
    assert summary.high == pytest.approx(high, abs=1e-12)


def test_other_levels_match_scipy() -> None:
    values = [0.1, 0.5, 0.2, 0.9]
    for level in (0.5, 0.9, 0.99):
        low, high = sps.t.interval(level, 3, loc=np.mean(values), scale=sps.sem(values))
        assert ci_half_width(values, level) == pytest.approx((high - low) / 2, abs=1e-12)


@pytest.mark.parametrize("seed", range(20))
def test_paired_interval_excludes_zero_exactly_when_paired_t_test_rejects(seed: int) -> None:
    rng = np.random.default_rng(seed)
    b = rng.normal(0.5, 0.1, 5)
    a = b + rng.normal(rng.choice([-0.05, 0.0, 0.05]), 0.04, 5)
    difference = paired(a.tolist(), b.tolist())
    p = sps.ttest_rel(a, b).pvalue
    assert difference.excludes_zero() == (p < 0.05)
    expected = NOT_DISTINGUISHABLE if p >= 0.05 else ("a better" if a.mean() > b.mean() else "b better")
    assert verdict(difference, "a", "b") == expected


def test_paired_is_not_the_unpaired_interval() -> None:
    """Shared seed-to-seed variation cancels in the paired difference: a consistent +0.02 over five seeds
    whose levels spread by 0.2 is decided, while the two unpaired intervals overlap widely."""
    b = [0.30, 0.50, 0.40, 0.60, 0.45]
    a = [x + d for x, d in zip(b, [0.02, 0.03, 0.02, 0.025, 0.015])]
    assert mean_ci(a).low < mean_ci(b).high
    assert verdict(paired(a, b), "meta", "base") == "meta better"
    assert verdict(paired(b, a), "base", "meta") == "meta better"


def test_undefined_cases() -> None:
    one = mean_ci([0.3])
    assert one.mean == 0.3 and math.isnan(one.ci95)
    assert verdict(paired([0.9], [0.1])) == NOT_DISTINGUISHABLE  # one seed decides nothing
    with_nan = mean_ci([0.3, math.nan, 0.5])
    assert math.isnan(with_nan.mean) and math.isnan(with_nan.ci95)
    assert verdict(with_nan) == NOT_DISTINGUISHABLE
    assert mean_ci([0.25, 0.25, 0.25]).ci95 == 0.0
    assert verdict(paired([0.5, 0.5], [0.4, 0.4])) == "A better"  # no spread at all: the interval is a point
    with pytest.raises(ValueError, match="equal lengths"):
        paired([0.1, 0.2], [0.1])
    with pytest.raises(ValueError, match="level"):
        ci_half_width([0.1, 0.2], 1.0)


def test_as_dict_is_the_report_schema() -> None:
    record = mean_ci([0.1, 0.2, 0.6]).as_dict()
    assert set(record) == {"mean", "ci95", "per_seed"}
    assert record["per_seed"] == [0.1, 0.2, 0.6]
    assert record["mean"] == pytest.approx(0.3)
    assert record["ci95"] == pytest.approx(ci_half_width([0.1, 0.2, 0.6]))
