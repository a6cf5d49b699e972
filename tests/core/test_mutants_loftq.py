"""LoftQ (``core/methods/loftq.py``) pinned where mutation testing (``bash .ci/mutate
core/methods/loftq.py``) found it untested: one alternating step (PEFT's default
``loftq_iter=1``) is allowed and gives ``Q = quant(W)``, ``s B A = SVD_r(W - Q)`` (checked
against ``torch.linalg.svd``), and ``svd_factors`` decomposes the smaller Gram matrix (the
cost its docstring promises on wide and tall matrices alike)."""

import pytest
import torch
from torch import nn

from lorakit.core import make_config, methods, quantize
from lorakit.core.methods.loftq import svd_factors
from lorakit.core.quant import fake_quantize


@pytest.mark.parametrize("bad", [0, -1, 1.5])
def test_loftq_iter_limits(bad):
    assert make_config("loftq", loftq_iter=1).loftq_iter == 1
    with pytest.raises(ValueError, match="loftq_iter must be a positive integer"):
        make_config("loftq", loftq_iter=bad)


def test_one_step_quantizes_w_and_starts_at_the_best_rank_r_fit_of_the_error():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 12))
    w = model[0].weight.detach().clone()
    quantize(model, bits=2, group_size=16,
             adapter=make_config("loftq", r=3, alpha=6.0, loftq_iter=1, targets=("0",)))
    q = fake_quantize(w, 2, "nf", 16)
    u, s, vh = torch.linalg.svd((w - q).double())
    best = (u[:, :3] * s[:3]) @ vh[:3]
    m = methods(model)[0]
    torch.testing.assert_close(model[0].base.weight, q)
    with torch.no_grad():
        torch.testing.assert_close(m.delta_weight().double(), best, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("shape", [(4, 12), (12, 4)])
def test_svd_factors_decomposes_the_smaller_gram_matrix(shape, monkeypatch):
    seen, eigh = [], torch.linalg.eigh
    monkeypatch.setattr(torch.linalg, "eigh", lambda g: seen.append(g.shape) or eigh(g))
    torch.manual_seed(0)
    m = torch.randn(*shape)
    a, b = svd_factors(m, 2)
    assert seen == [(4, 4)]
    u, s, vh = torch.linalg.svd(m.double())
    torch.testing.assert_close((b @ a).double(), (u[:, :2] * s[:2]) @ vh[:2], atol=1e-5, rtol=1e-5)
