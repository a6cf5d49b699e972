"""Edge cases of ``compare_stats`` and ``compare_report`` that a mutation run showed
untested: no values, one value on either side of a difference, learning rates with
different numbers of seeds (a failed run leaves one lr short: the MEAN over seeds decides,
not the sum), and the table's header and step-time / memory cells."""

from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace

import pytest

from lorakit.apps.compare.report import markdown, summarize
from lorakit.apps.compare.stats import choose_lr, t_interval, welch_interval


def test_no_values_is_a_clear_error():
    with pytest.raises(ValueError, match="at least one value"):
        t_interval([])
    with pytest.raises(ValueError, match="at least one learning rate"):
        choose_lr({}, True)


@pytest.mark.parametrize(("a", "b"), [([1.0, 2.0, 3.0], [2.5]), ([2.5], [1.0, 2.0, 3.0])])
def test_a_difference_with_one_value_on_either_side_has_no_interval(a, b):
    d = welch_interval(a, b)
    assert d.mean == pytest.approx(sum(a) / len(a) - sum(b) / len(b)) and d.n == 1
    assert d.half is None and d.low is None and d.high is None


def test_one_value_has_a_mean_and_no_interval():
    ci = t_interval([0.4])
    assert (ci.mean, ci.half, ci.n, ci.low, ci.high) == (0.4, None, 1, None, None)
    with pytest.raises(dataclasses.FrozenInstanceError):  # a reported interval is a value
        ci.mean = 0.5


def test_welch_with_two_values_each_and_in_both_orders():
    # a = [1, 3], b = [0, 4]: s^2 / n = 2 / 2 = 1 and 8 / 2 = 4, se = sqrt(5),
    # df = 5^2 / (1^2 / 1 + 4^2 / 1) = 25 / 17, t_{0.975, 25/17} = 6.188115 (from scipy once)
    d = welch_interval([1.0, 3.0], [0.0, 4.0])
    assert d.mean == 0.0 and d.n == 2
    assert d.half == pytest.approx(6.188115 * 5**0.5, rel=1e-6)
    # four values first: the same half-width as with three first (test_compare.py)
    ab, ba = welch_interval([1.0, 2.0, 3.0], [2.0, 4.0, 6.0, 8.0]), welch_interval(
        [2.0, 4.0, 6.0, 8.0], [1.0, 2.0, 3.0]
    )
    assert ba.mean == pytest.approx(3.0) and ba.half == pytest.approx(ab.half, rel=1e-12)
    assert ba.half == pytest.approx(2.756285 * (1 / 3 + 5 / 3) ** 0.5, rel=1e-5)


def test_identical_values_give_a_zero_width_difference():
    d = welch_interval([0.5, 0.5], [0.25, 0.25, 0.25])
    assert (d.mean, d.half, d.low, d.high) == (0.25, 0.0, 0.25, 0.25)


def test_the_mean_decides_when_seed_counts_differ():
    # lr 1e-3: two seeds at 0.6 (sum 1.2); lr 1e-2: one seed at 0.7 (mean higher, sum lower)
    assert choose_lr({1e-3: [0.6, 0.6], 1e-2: [0.7]}, True) == 1e-2
    # lower is better: mean 0.3 beats (0.2 + 0.5) / 2 = 0.35, though its sum 0.9 is larger
    assert choose_lr({1e-3: [0.2, 0.5], 1e-2: [0.3, 0.3, 0.3]}, False) == 1e-2


def _row(method: str, **kw) -> dict:
    row = {"method": method, "mean": 0.5, "ci95_low": 0.4, "ci95_high": 0.6, "lr": 0.01,
           "diff_vs_lora": 0.0, "diff_ci95": 0.1, "trainable_parameters": 1234,
           "step_ms": 12.345, "peak_memory_mb": 1024.56}  # fmt: skip
    return row | kw


@pytest.mark.parametrize(("higher", "words"), [(True, "higher is better"), (False, "lower is better")])
def test_the_table_says_which_way_is_better_and_rounds_time_and_memory(higher, words):
    plan = SimpleNamespace(pipeline="fake", metric="wer", higher_is_better=higher, extra=(),
                           seeds=[0, 1], lrs=[0.01], failures=[])  # fmt: skip
    vera = _row("vera", mean=0.3, ci95_low=0.2, ci95_high=0.4, diff_vs_lora=-0.2, step_ms=None)
    ada = _row("adalora", diff_vs_lora=0.05)  # sorts before "lora": still gets its difference
    wide = _row("wide", mean=0.1, ci95_low=-0.2, ci95_high=0.4)  # half-width above the mean
    rows = [_row("lora"), vera, ada, wide]
    text = markdown(plan, rows)
    assert text.startswith(f"**fake**: test wer ({words}), mean over seeds 0, 1 ")
    assert "| lora | 0.5000 ± 0.1000 | — | 0.01 | 1,234 | 12.3 | 1024.6 |" in text
    assert "| vera | 0.3000 ± 0.1000 | -0.2000 ± 0.1000 | 0.01 | 1,234 | n/a | 1024.6 |" in text
    assert "| adalora | 0.5000 ± 0.1000 | +0.0500 ± 0.1000 |" in text
    assert "| wide | 0.1000 ± 0.3000 |" in text


def test_summarize_records_read_back_from_json_with_one_seed_and_a_failed_method():
    """Records of a re-run come from metrics.json (new string objects); LoRA failed in every
    run (no row, no difference); one seed: no interval, and its parameter count is used."""
    plan = SimpleNamespace(methods=["lora", "vera"], lrs=[0.01, 0.1], metric="acc",
                           higher_is_better=True, extra=())  # fmt: skip
    records = json.loads(json.dumps([
        {"method": "vera", "lr": lr, "seed": 3, "val": {"acc": v}, "test": {"acc": t},
         "trainable_parameters": 99, "step_ms": 5.0, "peak_memory_mb": None}
        for lr, v, t in ((0.01, 0.2, 0.9), (0.1, 0.6, 0.4))
    ]))  # fmt: skip
    (row,) = summarize(plan, records)
    assert (row["method"], row["lr"], row["mean"], row["seeds"]) == ("vera", 0.1, 0.4, 1)
    assert row["ci95_low"] is None and row["trainable_parameters"] == 99
    assert row["test_by_seed"] == {3: 0.4} and "diff_vs_lora" not in row
    assert row["step_ms"] == 5.0 and row["peak_memory_mb"] is None
