"""The sentence bootstrap of the Whisper report against a case with known quantiles."""

from __future__ import annotations

import pytest
from scipy.stats import binom

from lorakit.speech.whisper.evaluate import Scored
from lorakit.speech.whisper.validate import bootstrap_wer

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
