"""Mean and 95 % confidence interval over seeds, for benchmark tables.

``mean_ci([0.71, 0.74, 0.70])`` -> ``(mean, half_width)`` with the half width of the
two-sided Student-t interval ``t_{0.975, n-1} * sd / sqrt(n)`` (sd with ``n - 1``). With one
value the half width is ``nan`` (no interval can be claimed from one seed). ``fmt`` prints
``0.731 ± 0.012``. ``nan`` entries (a run that could not give the number) are dropped.
"""

from __future__ import annotations

import math

from scipy.stats import t as student_t


def mean_ci(values, level: float = 0.95) -> tuple[float, float]:
    """(mean, half width of the ``level`` interval) over the finite ``values``."""
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not vals:
        return math.nan, math.nan
    n = len(vals)
    mean = sum(vals) / n
    if n < 2:
        return mean, math.nan
    sd = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1))
    return mean, float(student_t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)


def fmt(values, digits: int = 3) -> str:
    """``mean ± half`` (or ``mean`` alone when there is no interval)."""
    m, h = mean_ci(values)
    if math.isnan(m):
        return "n/a"
    return f"{m:.{digits}f}" if math.isnan(h) else f"{m:.{digits}f} ± {h:.{digits}f}"


def paired_diff(a, b) -> list[float]:
    """Per-seed differences ``a_i - b_i`` (both lists in the same seed order)."""
    if len(a) != len(b):
        raise ValueError(f"paired_diff: {len(a)} and {len(b)} values (need one per seed each)")
    return [float(x) - float(y) for x, y in zip(a, b, strict=True)]
