"""The continual matrix scores (average, BWT, FWT) against a hand-made matrix."""

from __future__ import annotations

import pytest

from lorakit.data.continual import average_final, backward_transfer, forward_transfer
from lorakit.data.continual.scores import summary

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


def test_shapes_that_are_not_a_sequence():
    """Found by mutation testing: every ragged row is refused (longer ones too), a matrix
    with more rows than tasks or a before list with more scores is not a sequence."""
    with pytest.raises(ValueError, match="non-empty rectangle"):
        average_final([[0.1], [0.2, 0.3]])  # a row longer than the first
    three_by_two = [[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]]
    assert backward_transfer(three_by_two) is None
    assert forward_transfer(three_by_two, [0.0, 0.0]) is None
    with pytest.raises(ValueError, match="before has 5 scores, the matrix 4 tasks"):
        forward_transfer(R, BEFORE + [0.3])
    # one task: no earlier task to forget, no later one to help
    assert backward_transfer([[0.5]]) is None and forward_transfer([[0.5]], [0.1]) is None


def test_a_long_sequence_compares_lengths_by_value():
    """300 tasks: lengths above CPython's small-int cache (256) still compare equal."""
    n = 300
    eye = [[1.0 if i == j else 0.5 for j in range(n)] for i in range(n)]
    assert average_final(eye) == pytest.approx((0.5 * (n - 1) + 1.0) / n)
    assert backward_transfer(eye) == pytest.approx(-0.5)
    assert forward_transfer(eye, [0.25] * n) == pytest.approx(0.25)
