"""QWHA (``core/methods/qwha.py``) pinned where mutation testing (``bash .ci/mutate
core/methods/qwha.py``) found it untested: ``alloc_power`` 0 (every channel the same number
of coefficients) is allowed, ``allocate`` gives the remainder to the largest fractional
shares (largest-remainder rounding), and an absorbed layer stores its locations in the
row-major order of a fresh layer (the same locations give the same adapter file)."""

import pytest
import torch
from torch import nn

from lorakit.core import make_config, methods, quantize
from lorakit.core.methods.qwha import allocate


def test_alloc_power_limits():
    for ok in (0.0, 0.5, 2.0):
        assert make_config("qwha", alloc_power=ok).alloc_power == ok
    with pytest.raises(ValueError, match="alloc_power must be >= 0"):
        make_config("qwha", alloc_power=-0.1)


def test_allocate_rounds_by_largest_remainder():
    """Shares 2.9, 0.6, 0.5 of 4: floors 2, 0, 0, the two left to the remainders 0.9, 0.6."""
    got = allocate(torch.tensor([2.9, 0.6, 0.5]), 4, cap=8)
    assert got.tolist() == [3, 1, 0]
    got = allocate(torch.tensor([5.0, 1.4, 0.6]), 5, cap=3)  # shares 3.57, 1, 0.43; cap 3
    assert got.tolist() == [3, 1, 1]


def _absorbed(alloc_power):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 6))
    with torch.no_grad():
        model[0].weight[:3] *= 10  # three strong channels
    quantize(model, bits=2, group_size=8,
             adapter=make_config("qwha", n_coef=18, alloc_power=alloc_power, targets=("0",)))
    return methods(model)[0]


def test_alloc_power_zero_gives_every_channel_the_same_count():
    m = _absorbed(0.0)
    assert torch.bincount(m.rows, minlength=6).tolist() == [3] * 6
    assert _absorbed(1.0).rows.bincount(minlength=6)[:3].sum() > 9  # power 1: strong rows more


def test_absorbed_locations_are_in_row_major_order_like_a_fresh_layer():
    m = _absorbed(1.0)
    flat = m.rows * m.n + m.cols
    assert bool((flat[1:] > flat[:-1]).all())
