"""Effective robustness (Taori et al. 2020): OOD accuracy above the baseline line.

The baseline line is fitted by least squares in logit space, ``logit(ood) = a logit(id) + b``,
on baseline models (e.g. standard fine-tunes, linear probes); a model's effective
robustness is ``ood - sigmoid(a logit(id) + b)``. Accuracies are fractions in [0, 1].
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

EPS = 1e-4


def logit(p: float) -> float:
    p = min(max(p, EPS), 1 - EPS)
    return math.log(p / (1 - p))


def sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z))


@dataclass(frozen=True)
class Line:
    """``logit(ood) = slope * logit(id) + intercept``."""

    slope: float
    intercept: float

    def predict(self, id_acc: float) -> float:
        return sigmoid(self.slope * logit(id_acc) + self.intercept)


def fit_line(points: list[tuple[float, float]]) -> Line | None:
    """Least-squares fit on ``(id, ood)`` points; None with fewer than two distinct ID values
    (with a single point the line goes through it with slope 1)."""
    if not points:
        return None
    xs, ys = [logit(p[0]) for p in points], [logit(p[1]) for p in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx < 1e-12:
        return Line(1.0, my - mx) if len(points) == 1 else None
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    return Line(slope, my - slope * mx)


def effective_robustness(line: Line | None, id_acc: float, ood_acc: float) -> float | None:
    return None if line is None else ood_acc - line.predict(id_acc)


def baseline_points(specs: list) -> list[tuple[str, float, float]]:
    """``(name, id, ood)`` from run folders (their metrics.json) or dicts."""
    out = []
    for spec in specs:
        if isinstance(spec, dict):
            try:
                out.append(
                    (
                        str(spec.get("name", len(out))),
                        float(spec["id_accuracy"]),
                        float(spec["ood_accuracy"]),
                    )
                )
            except KeyError as e:
                raise ValueError(f"eval.baselines: entry {spec} lacks {e.args[0]}") from None
            continue
        path = Path(spec) / "metrics.json"
        if not path.is_file():
            raise ValueError(
                f"eval.baselines: {path} does not exist (a finished run folder is needed)"
            )
        m = json.loads(path.read_text())
        out.append((Path(spec).name, float(m["id_accuracy"]), float(m["ood_accuracy"])))
    return out
