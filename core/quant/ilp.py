"""LQ-LoRA's bit allocation as a 0/1 integer linear program (``scipy.optimize.milp``).

Matrices ``n = 1..N`` each pick one quantization configuration ``c`` (here: a bit width).
``x[n, c] in {0, 1}``; minimise the total reconstruction error ``sum e[n, c] x[n, c]``
subject to ``sum_c x[n, c] = 1`` for every matrix and the memory budget
``sum b[n, c] x[n, c] <= budget`` (bytes of codes + scales). ``e`` is
``||W_n - Q_c - L1 L2||_F^2`` after the LQ decomposition with configuration ``c``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp


@dataclass
class Allocation:
    choice: list[int]  # chosen configuration index per matrix
    error: float  # objective: summed squared error of the chosen configurations
    cost: float  # bytes used (<= budget)
    budget: float


def allocate(errors: np.ndarray, costs: np.ndarray, budget: float) -> Allocation:
    """Solve the ILP above for ``errors``, ``costs`` of shape ``(N, C)``."""
    errors, costs = np.asarray(errors, float), np.asarray(costs, float)
    if errors.shape != costs.shape or errors.ndim != 2:
        raise ValueError(f"allocate: errors {errors.shape} and costs {costs.shape} must be (N, C)")
    n, c = errors.shape
    floor = costs.min(1).sum()
    if budget < floor:
        raise ValueError(
            f"bit budget {budget:,.0f} bytes is below the smallest possible "
            f"{floor:,.0f} bytes (every matrix at its cheapest configuration)"
        )
    one_each = np.kron(np.eye(n), np.ones((1, c)))  # row n sums x[n, :]
    res = milp(
        c=errors.reshape(-1),
        constraints=[
            LinearConstraint(costs.reshape(1, -1), -np.inf, budget),
            LinearConstraint(one_each, 1, 1),
        ],
        integrality=np.ones(n * c),
        bounds=Bounds(0, 1),
    )
    if not res.success:
        raise ValueError(f"bit allocation ILP failed: {res.message}")
    x = np.round(res.x).reshape(n, c)
    choice = [int(i) for i in x.argmax(1)]
    cost = float(sum(costs[i, j] for i, j in enumerate(choice)))
    err = float(sum(errors[i, j] for i, j in enumerate(choice)))
    return Allocation(choice, err, cost, float(budget))
