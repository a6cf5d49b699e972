"""QWHA (``core/methods/qwha.py``) pinned where mutation testing (``bash .ci/mutate
core/methods/qwha.py``) found it untested: ``absorb`` redone by hand on a width with a
Sylvester Hadamard matrix (the error's spectrum, per-channel counts by largest remainder, the
largest coefficients kept, ``F`` stored divided by ``alpha``); ``alloc_power`` 0 (every
channel the same count) allowed; ``allocate``'s rounding, cap and scale invariance; the
``n_coef`` limits; and absorbed locations stored in the row-major order of a fresh layer (the
same locations give the same adapter file)."""

import pytest
import torch
from torch import nn

from lorakit.core import inject, make_config, methods, quantize
from lorakit.core.methods.qwha import allocate
from lorakit.core.quant import fake_quantize


def test_alloc_power_limits():
    for ok in (0.0, 0.5, 2.0):
        assert make_config("qwha", alloc_power=ok).alloc_power == ok
    with pytest.raises(ValueError, match="alloc_power must be >= 0"):
        make_config("qwha", alloc_power=-0.1)


def test_allocate_rounds_by_largest_remainder():
    """Shares 2.9, 0.6, 0.5 of 4: floors 2, 0, 0, the two left to the remainders 0.9, 0.6."""
    got = allocate(torch.tensor([2.9, 0.6, 0.5]), 4, cap=8)
    assert got.tolist() == [3, 1, 0]
    assert allocate(torch.tensor([2.9, 0.6, 0.5]) * 1e-3, 4, cap=8).tolist() == [3, 1, 0]
    got = allocate(torch.tensor([5.0, 1.4, 0.6]), 5, cap=3)  # shares 3.57, 1, 0.43; cap 3
    assert got.tolist() == [3, 1, 1]
    # shares 4.92, 0.59, 0.49 of 6, cap 3: floors 3, 0, 0; one each to the other two; the
    # last one to the channel least above its share (0.59 - 1), never past the cap
    assert allocate(torch.tensor([10.0, 1.2, 1.0]), 6, cap=3).tolist() == [3, 2, 1]


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


def _largest_remainder(weights: list[float], total: int) -> list[int]:
    share = [total * w / sum(weights) for w in weights]
    k = [int(s) for s in share]
    for i in sorted(range(len(k)), key=lambda i: k[i] - share[i])[: total - sum(k)]:
        k[i] += 1
    return k


@pytest.mark.parametrize("alpha", [1.0, 2.5])
def test_absorb_by_hand_on_a_power_of_two_width(alpha):
    """``E = W - Q(W)``, ``f = E H`` (Sylvester ``H``, 16 x 16); channel ``i`` keeps its
    ``k_i`` largest ``|f_ij|`` (``k`` by largest remainder of ``12 ||f_i|| / sum``);
    ``dW = F H^T / 16`` whatever ``alpha`` (``F`` is stored divided by it)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 4))
    w = model[0].weight.detach().clone()
    quantize(model, bits=2, group_size=8,
             adapter=make_config("qwha", n_coef=12, alpha=alpha, targets=("0",)))
    h = torch.ones(1, 1)
    for _ in range(4):
        h = torch.kron(h, torch.tensor([[1.0, 1.0], [1.0, -1.0]]))
    err = (w - fake_quantize(w, 2, "nf", 8)).double()
    f = err @ h.double()
    k = _largest_remainder(f.norm(dim=1).tolist(), 12)
    keep = torch.zeros_like(f, dtype=torch.bool)
    for i, ki in enumerate(k):
        keep[i, f[i].abs().argsort(descending=True)[:ki]] = True
    m = methods(model)[0]
    assert torch.equal(m.rows, keep.nonzero()[:, 0]) and torch.equal(m.cols, keep.nonzero()[:, 1])
    torch.testing.assert_close(m.coef.detach().double(), f[keep] / alpha, atol=1e-6, rtol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(m.delta_weight().double(), (f * keep) @ h.double().T / 16,
                                   atol=1e-6, rtol=1e-5)  # fmt: skip


def test_n_coef_limits():
    with pytest.raises(ValueError, match="n_coef must be an integer >= 0"):
        make_config("qwha", n_coef=-1)
    model = nn.Sequential(nn.Linear(12, 3))  # spectrum 3 x 12 (a Paley Hadamard of 12)
    inject(model, make_config("qwha", n_coef=36, targets=("0",)))  # every entry: allowed
    assert methods(model)[0].coef.numel() == 36
    with pytest.raises(ValueError, match=r"n_coef=37 is larger than layer 0 allows \(spectrum 3x12, at most 36\)"):
        inject(nn.Sequential(nn.Linear(12, 3)), make_config("qwha", n_coef=37, targets=("0",)))
