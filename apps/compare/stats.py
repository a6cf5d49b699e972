"""The statistics of ``lorakit compare``: t-intervals over seeds and the lr choice.

The interval of a mean over ``n`` seeds is Student's: ``mean +- t_{0.975, n-1} s / sqrt(n)``
with ``s`` the sample standard deviation (n - 1 in the denominator); one seed has no
interval (``None``). The difference of two methods uses Welch's interval (unequal
variances, Welch-Satterthwaite degrees of freedom).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy.stats import t as student_t


@dataclass(frozen=True)
class Interval:
    """``mean`` and the half-width ``half`` of its 95 % interval (None with one value)."""

    mean: float
    half: float | None
    n: int

    @property
    def low(self) -> float | None:
        return None if self.half is None else self.mean - self.half

    @property
    def high(self) -> float | None:
        return None if self.half is None else self.mean + self.half


def t_interval(values: list[float], level: float = 0.95) -> Interval:
    """Student-t interval of the mean of ``values`` (the seeds of one configuration)."""
    n = len(values)
    if n == 0:
        raise ValueError("t_interval needs at least one value")
    mean = sum(values) / n
    if n == 1:
        return Interval(mean, None, 1)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return Interval(mean, float(student_t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n), n)


def welch_interval(a: list[float], b: list[float], level: float = 0.95) -> Interval:
    """Interval of ``mean(a) - mean(b)`` (Welch); None half-width when either has one value."""
    na, nb = len(a), len(b)
    diff = sum(a) / na - sum(b) / nb
    if na < 2 or nb < 2:
        return Interval(diff, None, min(na, nb))
    va = sum((x - sum(a) / na) ** 2 for x in a) / (na - 1) / na
    vb = sum((x - sum(b) / nb) ** 2 for x in b) / (nb - 1) / nb
    se = math.sqrt(va + vb)
    if se == 0:
        return Interval(diff, 0.0, min(na, nb))
    df = (va + vb) ** 2 / (va**2 / (na - 1) + vb**2 / (nb - 1))
    return Interval(diff, float(student_t.ppf(0.5 + level / 2, df)) * se, min(na, nb))


def choose_lr(val: dict[float, list[float]], higher_is_better: bool) -> float:
    """The learning rate whose mean VALIDATION metric over seeds is best.

    ``val`` maps lr -> the validation metric of each seed. Ties go to the smaller lr. Test
    metrics never enter here: the caller reports test numbers only for the lr chosen.
    """
    if not val:
        raise ValueError("choose_lr needs at least one learning rate")
    sign = 1.0 if higher_is_better else -1.0
    return max(sorted(val), key=lambda lr: (sign * sum(val[lr]) / len(val[lr]), -lr))
