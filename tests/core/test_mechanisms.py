"""Methods' formulas after training steps, recomputed here by hand (not by the method's code)."""

import torch
from torch import nn

from lorakit.core import inject, make_config, methods


def _steps(model, x, n=3, lr=0.05):
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    for _ in range(n):
        opt.zero_grad()
        (model(x) - 1.0).pow(2).mean().backward()
        opt.step()


def test_loldu_weight_after_steps_is_w0_plus_pl_diag_sigma_d_minus_sigma0_dr_u():
    torch.manual_seed(0)
    lin = nn.Linear(12, 8)
    w0, b0 = lin.weight.detach().clone().double(), lin.bias.detach().clone()
    model = nn.Sequential(lin)
    r, alpha = 4, 8.0
    inject(model, make_config("loldu", r=r, alpha=alpha, targets=("0",)))
    x = torch.randn(16, 12)
    _steps(model, x)
    m = methods(model)[0]
    sigma, d = float(m.sigma), m.d.detach().double()
    sigma0 = alpha / r
    assert abs(sigma - sigma0) > 1e-3  # the scale trained, so the two residuals differ
    # independent LDU of W0: W0 = P L diag(D) U with a unit-diagonal U
    p, low, up = torch.linalg.lu(w0)
    dd = torch.diagonal(up)
    u = up / dd[:, None]
    pl_r, u_r, d_r = (p @ low)[:, :r], u[:r], dd[:r]
    w = w0 + pl_r @ torch.diag(sigma * d - sigma0 * d_r) @ u_r
    torch.testing.assert_close(model(x), (x.double() @ w.T).float() + b0, atol=1e-5, rtol=1e-5)


def test_nola_mixes_every_basis_after_steps():
    torch.manual_seed(0)
    lin = nn.Linear(12, 8)
    w0, b0 = lin.weight.detach().clone(), lin.bias.detach().clone()
    model = nn.Sequential(lin)
    r, alpha, k = 2, 4.0, 5
    inject(model, make_config("nola", r=r, alpha=alpha, k=k, targets=("0",)))
    x = torch.randn(16, 12)
    _steps(model, x)
    m = methods(model)[0]
    c_a, c_b = m.c_a.detach(), m.c_b.detach()
    assert (c_b.abs() > 1e-4).all()  # every B coefficient trained
    bases_a, bases_b = m.bases.A, m.bases.B
    assert bases_a.shape == (k, r, 12) and bases_b.shape == (k, 8, r)
    a = sum(c_a[i] * bases_a[i] for i in range(k))
    b = sum(c_b[j] * bases_b[j] for j in range(k))
    w = w0 + (alpha / r) * b @ a
    torch.testing.assert_close(model(x), x @ w.T + b0, atol=1e-5, rtol=1e-5)
