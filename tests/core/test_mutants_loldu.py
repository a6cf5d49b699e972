"""LoLDU (``core/methods/loldu.py``) pinned where mutation testing (``bash .ci/mutate
core/methods/loldu.py``) found it untested: the merged update ``dW = P L_r diag(sigma d -
sigma_0 D_r) U_r`` (``delta_weight``, used by merge) and the LDU of a matrix with a negative
or a zero pivot. References are computed here from ``torch.linalg.lu``."""

import torch
from torch import nn

from lorakit.core import inject, make_config, methods
from lorakit.core.methods.loldu import ldu


def test_merged_update_is_pl_r_diag_sigma_d_minus_sigma0_dr_u_r():
    torch.manual_seed(0)
    lin = nn.Linear(7, 5)
    w0 = lin.weight.detach().double().clone()
    model = nn.Sequential(lin)
    r, alpha = 3, 6.0
    inject(model, make_config("loldu", r=r, alpha=alpha, targets=("0",)))
    m = methods(model)[0]
    with torch.no_grad():
        m.sigma.fill_(1.5)
        m.d.mul_(torch.tensor([0.5, -2.0, 3.0]))
    p, low, up = torch.linalg.lu(w0)
    piv = torch.diagonal(up)
    pl_r, u_r, d_r = (p @ low)[:, :r], (up / piv[:, None])[:r], piv[:r]
    want = pl_r @ torch.diag(1.5 * m.d.detach().double() - (alpha / r) * d_r) @ u_r
    torch.testing.assert_close(m.delta_weight().double(), want, atol=1e-5, rtol=1e-5)
    x = torch.randn(4, 7)
    torch.testing.assert_close(m.delta(x), x @ want.float().T, atol=1e-5, rtol=1e-5)


def test_negative_pivot_keeps_its_sign_in_d_and_u_has_a_unit_diagonal():
    w = torch.tensor([[-1.0, 2.0], [0.5, 3.0]], dtype=torch.float64)  # first pivot: -1
    p, low, d, u = ldu(w)
    assert d[0] == -1.0
    torch.testing.assert_close(torch.diagonal(u), torch.ones(2, dtype=torch.float64))
    torch.testing.assert_close(p @ low @ torch.diag(d) @ u, w)


def test_zero_pivot_leaves_its_row_unnormalised_and_the_product_exact():
    w = torch.tensor([[1.0, 2.0, 3.0], [2.0, 4.0, 6.0], [1.0, 0.0, 1.0]], dtype=torch.float64)
    p, low, d, u = ldu(w)  # rank 2: the last pivot is 0
    assert torch.isfinite(u).all() and torch.isfinite(d).all()
    torch.testing.assert_close(p @ low @ torch.diag(d) @ u, w)
