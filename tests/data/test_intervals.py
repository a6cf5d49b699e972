"""``data.intervals``: the t-interval of benchmark tables against scipy and the closed form."""

from __future__ import annotations

import math

import pytest
from scipy.stats import t as student_t

from lorakit.data.intervals import fmt, mean_ci, paired_diff

# --------------------------------------------------------------------------- t-intervals


def test_mean_ci_matches_scipy_and_the_closed_form():
    vals = [0.71, 0.74, 0.70, 0.77]
    m, half = mean_ci(vals)
    sem = math.sqrt(sum((v - 0.73) ** 2 for v in vals) / 3) / 2  # s / sqrt(4)
    lo, hi = student_t.interval(0.95, 3, loc=0.73, scale=sem)
    assert m == pytest.approx(0.73) and (m - half, m + half) == pytest.approx((lo, hi))
    assert half == pytest.approx(3.182446 * sem, rel=1e-6)  # t_{0.975, 3} from a table
    assert mean_ci(vals, level=0.9)[1] == pytest.approx(2.353363 * sem, rel=1e-6)
    # two values: half = t_{0.975, 1} * |a - b| / 2
    assert mean_ci([0.2, 0.5]) == pytest.approx((0.35, 12.706205 * 0.15), rel=1e-6)


def test_mean_ci_drops_missing_values_and_claims_nothing_from_one():
    assert mean_ci([0.2, None, math.nan, 0.5]) == pytest.approx(mean_ci([0.2, 0.5]))
    m, half = mean_ci([0.4])
    assert m == 0.4 and math.isnan(half)
    assert all(math.isnan(x) for x in mean_ci([None, math.nan]))
    assert fmt([0.2, 0.5]) == f"0.350 ± {12.706205 * 0.15:.3f}"
    assert fmt([0.4], digits=2) == "0.40" and fmt([]) == "n/a"


def test_paired_diff_keeps_the_seed_order():
    assert paired_diff([0.9, 0.5], [0.4, 0.7]) == pytest.approx([0.5, -0.2])
    with pytest.raises(ValueError, match="2 and 3 values"):
        paired_diff([1, 2], [1, 2, 3])


def test_paired_diff_of_many_seeds_compares_lengths_by_value():
    """Found by mutation testing: 300 values, above CPython's small-int cache (256)."""
    assert paired_diff([1.0] * 300, [0.25] * 300) == [0.75] * 300
    with pytest.raises(ValueError, match="3 and 2 values"):  # the longer list first
        paired_diff([1, 2, 3], [1, 2])
