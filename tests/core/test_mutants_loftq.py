"""LoftQ (``core/methods/loftq.py``) pinned where mutation testing (``bash .ci/mutate
core/methods/loftq.py``) found it untested: the default and limits of ``loftq_iter`` (one step,
PEFT's default, is allowed); the alternating steps ``Q = quant(W - L)``, ``L = SVD_r(W - Q)``
redone by hand for one and two steps against ``torch.linalg.svd``; ``svd_factors`` on
singular values below 1, on a rank below ``r``, and through the smaller Gram matrix (the cost
its docstring promises on wide and tall matrices alike)."""

import pytest
import torch
from torch import nn

from lorakit.core import make_config, methods, quantize
from lorakit.core.methods.loftq import svd_factors
from lorakit.core.quant import fake_quantize


def _best(m: torch.Tensor, r: int) -> torch.Tensor:
    """The best rank-``r`` approximation of ``m`` (Eckart-Young), from ``torch.linalg.svd``."""
    u, s, vh = torch.linalg.svd(m.double())
    return ((u[:, :r] * s[:r]) @ vh[:r]).float()


@pytest.mark.parametrize("bad", [0, -1, 1.5])
def test_loftq_iter_default_and_limits(bad):
    assert make_config("loftq").loftq_iter == 5
    assert make_config("loftq", loftq_iter=1).loftq_iter == 1
    with pytest.raises(ValueError, match="loftq_iter must be a positive integer"):
        make_config("loftq", loftq_iter=bad)


@pytest.mark.parametrize("iters", [1, 2])
def test_alternating_steps_by_hand(iters):
    """``L = 0``; ``iters`` times ``Q = quant(W - L)``, ``L = SVD_r(W - Q)``; the base stores
    ``Q`` and the adapter starts at ``s B A = L``."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 12))
    w = model[0].weight.detach().clone()
    quantize(model, bits=2, group_size=16,
             adapter=make_config("loftq", r=3, alpha=6.0, loftq_iter=iters, targets=("0",)))
    low = torch.zeros_like(w)
    for _ in range(iters):
        q = fake_quantize(w - low, 2, "nf", 16)
        low = _best(w - q, 3)
    m = methods(model)[0]
    torch.testing.assert_close(model[0].base.weight, q)
    with torch.no_grad():
        torch.testing.assert_close(m.delta_weight(), low, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("shape", [(4, 12), (12, 4)])
def test_svd_factors_decomposes_the_smaller_gram_matrix(shape, monkeypatch):
    seen, eigh = [], torch.linalg.eigh
    monkeypatch.setattr(torch.linalg, "eigh", lambda g: seen.append(g.shape) or eigh(g))
    torch.manual_seed(0)
    m = torch.randn(*shape) * 0.05  # singular values below 1 too
    a, b = svd_factors(m, 2)
    assert seen == [(4, 4)]
    torch.testing.assert_close(b @ a, _best(m, 2), atol=1e-6, rtol=1e-5)
    # the singular values split evenly: A = S^(1/2) V^T, B = U S^(1/2), so A A^T = B^T B = S
    s = torch.diag(torch.linalg.svdvals(m)[:2])
    torch.testing.assert_close(a @ a.T, s, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(b.T @ b, s, atol=1e-6, rtol=1e-5)


def test_rank_above_the_matrix_rank_gives_finite_factors(monkeypatch):
    """The Gram matrix of a rank-1 matrix has zero eigenvalues that floating point returns
    slightly negative (here: forced to -1e-12): they are clamped to 0, not square-rooted."""
    eigh = torch.linalg.eigh

    def rounded(g):
        ev, vec = eigh(g)
        return torch.where(ev.abs() < 1e-9, torch.full_like(ev, -1e-12), ev), vec

    monkeypatch.setattr(torch.linalg, "eigh", rounded)
    m = torch.outer(torch.tensor([1.0, -2.0, 0.5]), torch.tensor([0.3, 0.1, -0.4, 0.2]))
    a, b = svd_factors(m, 2)
    assert bool(torch.isfinite(a).all() and torch.isfinite(b).all())
    torch.testing.assert_close(b @ a, m, atol=1e-6, rtol=1e-5)
