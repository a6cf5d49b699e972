"""The statistics behind the reports, each against a hand computation or a known case: the
continual matrix scores (average, BWT, FWT), the t-interval of ``data.intervals`` and the
sentence bootstrap of the Whisper report."""

from __future__ import annotations

import math

import pytest
from scipy.stats import binom
from scipy.stats import t as student_t

from lorakit.data.continual import average_final, backward_transfer, forward_transfer
from lorakit.data.continual.scores import summary
from lorakit.data.intervals import fmt, mean_ci, paired_diff
from lorakit.speech.whisper.evaluate import Scored
from lorakit.speech.whisper.validate import bootstrap_wer

# --------------------------------------------------------------------------- continual scores
# R[i][j]: score on task j after training task i. Every entry differs, so reading a wrong
# index (R[j+1][j], R[j][j-1], the last task in BWT) gives another number.
R = [
    [0.50, 0.10, 0.20, 0.05],
    [0.40, 0.70, 0.30, 0.15],
    [0.35, 0.60, 0.80, 0.25],
    [0.30, 0.55, 0.75, 0.90],
]
BEFORE = [0.05, 0.08, 0.12, 0.20]
AVERAGE = (0.30 + 0.55 + 0.75 + 0.90) / 4  # 0.625, the last row
BWT = ((0.30 - 0.50) + (0.55 - 0.70) + (0.75 - 0.80)) / 3  # -0.4 / 3: forgetting
FWT = ((0.10 - 0.08) + (0.30 - 0.12) + (0.25 - 0.20)) / 3  # 0.25 / 3: R[j-1][j] - b[j]


def test_continual_scores_on_a_hand_made_matrix():
    assert average_final(R) == pytest.approx(0.625)
    assert backward_transfer(R) == pytest.approx(BWT) and BWT == pytest.approx(-0.4 / 3)
    assert forward_transfer(R, BEFORE) == pytest.approx(FWT) and FWT == pytest.approx(0.25 / 3)


def test_lower_is_better_flips_the_transfers_not_the_average():
    """For WER a rising error is forgetting: the sign makes negative mean worse."""
    wer = summary(R, BEFORE, higher_is_better=False)
    assert wer == pytest.approx({"average": AVERAGE, "bwt": -BWT, "fwt": -FWT})
    acc = summary(R, BEFORE, higher_is_better=True)
    assert acc == pytest.approx({"average": AVERAGE, "bwt": BWT, "fwt": FWT})


def test_two_tasks_and_joint_rows():
    two = [[0.9, 0.3], [0.6, 0.8]]
    assert backward_transfer(two) == pytest.approx(0.6 - 0.9)
    assert forward_transfer(two, [0.1, 0.2]) == pytest.approx(0.3 - 0.2)
    assert summary([[0.7, 0.5]], [0.1, 0.2], True) == {"average": 0.6, "bwt": None, "fwt": None}


def test_malformed_matrices_are_refused():
    with pytest.raises(ValueError, match="non-empty rectangle"):
        average_final([])
    with pytest.raises(ValueError, match="non-empty rectangle"):
        backward_transfer([[0.1, 0.2], [0.3]])
    with pytest.raises(ValueError, match="before has 3 scores, the matrix 4 tasks"):
        forward_transfer(R, BEFORE[:3])


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


# --------------------------------------------------------------------------- the bootstrap


def _sentences(k: int, wrong: int, words: int = 10, copies: int = 1) -> list[Scored]:
    """``k`` sentences of ``words`` words, the first ``wrong`` all wrong, the rest right;
    each sentence read ``copies`` times (rows with the same reference text)."""
    return [
        Scored(None, "", f"sentence {i}", "", words if i < wrong else 0, words, 0, 5 * words)
        for i in range(k)
        for _ in range(copies)
    ]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bootstrap_interval_has_the_binomial_quantiles(seed):
    """Resampling 10 equal sentences, 5 of them all wrong: the resampled WER is K / 10 with
    K ~ Binomial(10, 0.5), whose 2.5 % and 97.5 % quantiles are 2 and 8. The empirical
    CDF of 4000 draws is within 0.0025 (1 sd) of the true one, and the true CDF is at least
    0.014 away from 0.025 / 0.975 at these cells, so every seed finds them exactly."""
    lo, hi = bootstrap_wer(_sentences(10, 5), n=4000, seed=seed)
    assert (lo, hi) == (binom.ppf(0.025, 10, 0.5) / 10, binom.ppf(0.975, 10, 0.5) / 10)
    assert (lo, hi) == (0.2, 0.8)


def test_bootstrap_resamples_sentences_not_rows():
    """Three readings of each sentence move together: the same draws, the same ratios."""
    once = bootstrap_wer(_sentences(12, 3), n=500, seed=4)
    assert bootstrap_wer(_sentences(12, 3, copies=3), n=500, seed=4) == once
    assert bootstrap_wer(_sentences(12, 0)) == (0.0, 0.0)
    assert bootstrap_wer(_sentences(12, 12)) == (1.0, 1.0)
