"""The task-by-task matrix of a continual run and the scores read from it.

``R[i][j]`` is the score on task ``j`` after training task ``i`` (``N x N``); ``b[j]`` is
the score of the model before any training (the pretrained start). With ``sign = +1`` for
a score where higher is better (accuracy) and ``-1`` where lower is better (WER), so that
a negative transfer always means "worse" (the GEM paper's definitions, Lopez-Paz and
Ranzato 2017):

    average = mean_j R[N-1][j]                                       (final score per task)
    BWT     = sign * mean_{j < N-1} (R[N-1][j] - R[j][j])            (forgetting is < 0)
    FWT     = sign * mean_{j > 0} (R[j-1][j] - b[j])                 (help before training j)

A joint (multi-task) run has one row: ``average`` only; BWT and FWT are ``None``.
"""

from __future__ import annotations

from statistics import mean


def _check(matrix: list[list[float]]) -> int:
    n = len(matrix)
    if n == 0 or any(len(row) != len(matrix[0]) for row in matrix):
        raise ValueError("the score matrix must be a non-empty rectangle")
    return len(matrix[0])


def average_final(matrix: list[list[float]]) -> float:
    """Mean of the last row: the score on every task at the end of the sequence."""
    _check(matrix)
    return mean(matrix[-1])


def backward_transfer(matrix: list[list[float]], sign: int = 1) -> float | None:
    """``sign * mean_{j<N-1} (R[N-1][j] - R[j][j])``; None for a one-row (joint) matrix."""
    n = _check(matrix)
    if len(matrix) != n or n < 2:
        return None
    return sign * mean(matrix[-1][j] - matrix[j][j] for j in range(n - 1))


def forward_transfer(
    matrix: list[list[float]], before: list[float], sign: int = 1
) -> float | None:
    """``sign * mean_{j>0} (R[j-1][j] - b[j])``; None for a one-row (joint) matrix."""
    n = _check(matrix)
    if len(matrix) != n or n < 2:
        return None
    if len(before) != n:
        raise ValueError(f"before has {len(before)} scores, the matrix {n} tasks")
    return sign * mean(matrix[j - 1][j] - before[j] for j in range(1, n))


def summary(matrix: list[list[float]], before: list[float], higher_is_better: bool) -> dict:
    """``{average, bwt, fwt}`` of a matrix (see the module docstring)."""
    sign = 1 if higher_is_better else -1
    return {
        "average": average_final(matrix),
        "bwt": backward_transfer(matrix, sign),
        "fwt": forward_transfer(matrix, before, sign),
    }
