"""The catalogue's formulas after a few optimizer steps from a fixed seed, each against a
hand-written reference of METHODS.md (plain torch; the method's tensors are read, its code
is not reused): VeRA, RandLoRA, Uni-LoRA, SVFit, LoRA-SB, SoRA, LoRA-Squeeze, ALLoRA,
LoRA-GGPO, Block-LoRA."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lorakit.core import inject, make_config, methods, protocol


def _trained(method, d_in=12, d_out=8, steps=3, lr=0.05, seed=0, **hyper):
    """A Linear(d_in, d_out) adapted by ``method`` after ``steps`` Adam steps (with the
    protocol's hooks); returns the model, its frozen W0 and bias, the input and target."""
    torch.manual_seed(seed)
    lin = nn.Linear(d_in, d_out)
    w0, b0 = lin.weight.detach().clone(), lin.bias.detach().clone()
    model = nn.Sequential(lin)
    inject(model, make_config(method, targets=("0",), **hyper))
    x, y = torch.randn(24, d_in), torch.randn(24, d_out)
    loss_fn = lambda mod, _b: (mod(x) - y).pow(2).mean()  # noqa: E731
    protocol.prepare(model, [None, None], loss_fn)
    opt = protocol.method_optimizer(model, lr=lr) or torch.optim.Adam(
        protocol.param_groups(model, lr), lr=lr
    )
    for _ in range(steps):
        opt.zero_grad()
        loss_fn(model, None).backward()
        protocol.before_step(model, opt)
        opt.step()
        protocol.after_step(model, opt)
    return model, w0, b0, x, y


def _check(model, x, w, b0):
    with torch.no_grad():
        torch.testing.assert_close(model(x), x @ w.T + b0, atol=1e-5, rtol=1e-5)


def test_vera_is_diag_b_times_shared_b_times_diag_d_times_shared_a():
    model, w0, b0, x, y = _trained("vera", r=6)
    m = methods(model)[0]
    d, b = m.d.detach(), m.b.detach()
    assert (d - 0.1).abs().min() > 1e-4 and b.abs().min() > 1e-4  # both vectors trained
    a_base, b_base = m.bases.A, m.bases.B
    bound_a, bound_b = math.sqrt(6.0 / 12), math.sqrt(6.0 / 6)  # Kaiming-uniform bounds
    assert a_base.abs().max() <= bound_a and b_base.abs().max() <= bound_b
    _check(model, x, w0 + torch.diag(b) @ b_base @ torch.diag(d) @ a_base, b0)


@pytest.mark.parametrize(("d_in", "d_out"), [(12, 16), (16, 12)])
def test_randlora_is_a_sum_of_scaled_random_rank_r_bases(d_in, d_out):
    r, alpha = 4, 2.0
    model, w0, b0, x, y = _trained("randlora", d_in=d_in, d_out=d_out, r=r, alpha=alpha)
    m = methods(model)[0]
    small, big = min(d_in, d_out), max(d_in, d_out)
    n = math.ceil(small / r)
    lam, gamma = m.lam.detach(), m.gamma.detach()  # (r, n), (n, small)
    base_a, base_b = m.bases.A, m.bases.B  # (r, 1, small), (big, n, r)
    assert lam.abs().min() > 1e-4
    d = torch.zeros(big, small)
    for i in range(n * r):  # PEFT's pairing: B[:, i // r, i % r] with row (i // n, i % n)
        k, j = divmod(i, n)  # of the scaled bases lambda[k, j] * A[k] * gamma[j]
        d += torch.outer(base_b[:, i // r, i % r], lam[k, j] * base_a[k, 0] * gamma[j])
    dw = (alpha / r) * (d if d_out >= d_in else d.T)
    assert torch.linalg.matrix_rank(dw) == small  # full rank
    _check(model, x, w0 + dw, b0)


def test_unilora_factors_are_isometric_picks_of_one_vector():
    model, w0, b0, x, y = _trained("unilora", r=2, theta_d_length=16)
    m = methods(model)[0]
    theta = m.shared.theta.detach()
    idx = torch.cat([m.idx_A.flatten(), m.idx_B.flatten()])
    assert idx.numel() == 2 * (12 + 8)
    counts = torch.bincount(idx, minlength=16)
    assert counts.max() - counts.min() <= 1  # balanced
    scale = counts.float().rsqrt()  # each column of P has unit norm: an isometry
    a = theta[m.idx_A] * scale[m.idx_A]
    b = theta[m.idx_B] * scale[m.idx_B]
    _check(model, x, w0 + b @ a, b0)


def test_svfit_moves_only_the_top_r_singular_values():
    model, w0, b0, x, y = _trained("svfit", r=3)
    m = methods(model)[0]
    u, s, vh = torch.linalg.svd(w0.double(), full_matrices=False)
    ds = m.delta_s.detach().double()
    assert ds.abs().min() > 1e-4
    w = w0.double() + u[:, :3] @ torch.diag(ds) @ vh[:3]
    _check(model, x, w.float(), b0)
    core = u.T @ w @ vh.T  # W in W0's singular bases: diagonal, the top r values moved
    torch.testing.assert_close(core, torch.diag(torch.cat([s[:3] + ds, s[3:]])), atol=1e-5, rtol=0)


def test_lora_sb_starts_from_the_truncated_svd_of_the_first_adam_step_then_trains_r():
    model, w0, b0, x, y = _trained("lora_sb", r=3, alpha=6.0, steps=0)
    wg = w0.clone().requires_grad_(True)
    g = torch.autograd.grad((F.linear(x, wg, b0) - y).pow(2).mean(), wg)[0]
    u, s, vh = torch.linalg.svd(-1e-3 * torch.sign(g).double(), full_matrices=False)
    first = u[:, :3] @ torch.diag(s[:3]) @ vh[:3]  # best rank-3 of full FT's first step
    m = methods(model)[0]
    torch.testing.assert_close(m.delta_weight().double(), first, atol=1e-6, rtol=1e-5)
    model, _, _, x_, _ = _trained("lora_sb", r=3, alpha=6.0, steps=3)
    assert torch.equal(x_, x)
    m = methods(model)[0]
    bb, aa = m.B.double(), m.A.double()
    torch.testing.assert_close(bb @ bb.T, u[:, :3] @ u[:, :3].T, atol=1e-5, rtol=0)  # frozen
    torch.testing.assert_close(aa.T @ aa, vh[:3].T @ vh[:3], atol=1e-5, rtol=0)
    r_ = m.R.detach()
    assert (r_ - torch.diag(torch.diag(r_))).abs().max() > 1e-4  # R trained off-diagonal
    _check(model, x, w0 + 2.0 * m.B @ r_ @ m.A, b0)


def test_sora_gate_and_its_ramped_proximal_threshold():
    xi, ramp, lr = 0.4, 4, 0.05
    model, w0, b0, x, y = _trained("sora", r=3, alpha=3.0, xi=xi, xi_ramp=ramp, steps=0)
    m = methods(model)[0]
    opt = torch.optim.Adam(protocol.param_groups(model, lr), lr=lr)
    for t in range(5):
        opt.zero_grad()
        (model(x) - y).pow(2).mean().backward()
        protocol.before_step(model, opt)
        opt.step()
        g = m.g.detach().clone()
        protocol.after_step(model, opt)
        thr = lr * xi * min(1.0, (t + 1) / ramp)  # xi_t ramps to xi over xi_ramp steps
        torch.testing.assert_close(m.g.detach(), torch.sign(g) * (g.abs() - thr).clamp_min(0))
    gate = m.g.detach()
    _check(model, x, w0 + 1.0 * (m.B.detach() * gate) @ m.A.detach(), b0)


def test_lora_squeeze_keeps_the_best_rank_r_t_approximation_on_schedule():
    torch.manual_seed(0)
    lin = nn.Linear(12, 8)
    model = nn.Sequential(lin)
    inject(model, make_config("lora_squeeze", r=4, alpha=4.0, target_r=1, anneal_steps=3,
                              targets=("0",)))  # fmt: skip
    m = methods(model)[0]
    x, y = torch.randn(24, 12), torch.randn(24, 8)
    opt = torch.optim.Adam(protocol.param_groups(model, 0.05), lr=0.05)
    for t in range(4):
        opt.zero_grad()
        (model(x) - y).pow(2).mean().backward()
        opt.step()
        dense = (m.B @ m.A).detach().double()
        protocol.after_step(model, opt)
        r_t = round(4 - 3 * min(1.0, (t + 1) / 3))  # 3, 2, 1, 1
        assert m.r == r_t and m.A.shape == (r_t, 12)
        u, s, vh = torch.linalg.svd(dense)
        best = u[:, :r_t] @ torch.diag(s[:r_t]) @ vh[:r_t]  # Eckart-Young
        torch.testing.assert_close((m.B @ m.A).detach().double(), best, atol=1e-5, rtol=1e-5)


def test_allora_three_steps_of_adam_with_row_learning_rates():
    eta, lr = 2.0, 0.05
    model, w0, b0, x, y = _trained("allora", r=2, eta=eta, steps=0)
    m = methods(model)[0]
    ref = {"A": m.A.detach().clone(), "B": m.B.detach().clone()}
    st = {k: [torch.zeros_like(v), torch.zeros_like(v)] for k, v in ref.items()}
    opt = protocol.method_optimizer(model, lr=lr)
    for t in range(1, 4):
        a_, b_ = ref["A"].clone().requires_grad_(True), ref["B"].clone().requires_grad_(True)
        loss = (F.linear(x, w0 + b_ @ a_, b0) - y).pow(2).mean()  # s = 1
        grads = dict(zip("AB", torch.autograd.grad(loss, (a_, b_)), strict=True))
        for k in "AB":
            m1, m2 = st[k]
            m1.mul_(0.9).add_(0.1 * grads[k])
            m2.mul_(0.999).add_(0.001 * grads[k] ** 2)
            direction = (m1 / (1 - 0.9**t)) / ((m2 / (1 - 0.999**t)).sqrt() + 1e-8)
            row_lr = lr / torch.sqrt(ref[k].pow(2).sum(1, keepdim=True) + 1 / eta**2)
            ref[k] = ref[k] - row_lr * direction
        opt.zero_grad()
        (model(x) - y).pow(2).mean().backward()
        opt.step()
    torch.testing.assert_close(m.A.detach(), ref["A"], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(m.B.detach(), ref["B"], atol=1e-6, rtol=1e-5)
    _check(model, x, w0 + ref["B"] @ ref["A"], b0)


def test_lora_ggpo_perturbs_rows_by_the_previous_gradient_and_weight_norms():
    rho_g, rho_w = 0.3, 0.2
    model, w0, b0, x, y = _trained("lora_ggpo", r=2, alpha=2.0, rho_g=rho_g, rho_w=rho_w, steps=2)
    m = methods(model)[0]
    model.train()
    (model(x) - y).pow(2).mean().backward()  # step 3's gradient, taken at the perturbed point
    grads = (m.A.grad.detach().clone(), m.B.grad.detach().clone())
    opt = torch.optim.SGD([m.A, m.B], lr=0.0)  # lr 0: only the hooks act
    protocol.before_step(model, opt)
    protocol.after_step(model, opt)
    a, b = m.A.detach(), m.B.detach()
    sa = (rho_g * grads[0].norm(dim=1) + rho_w * a.norm(dim=1)) / math.sqrt(12)
    sb = (rho_g * grads[1].norm(dim=1) + rho_w * b.norm(dim=1)) / math.sqrt(2)
    torch.manual_seed(7)
    out = model(x)  # a training forward draws E_A, E_B
    torch.manual_seed(7)
    ea = torch.randn(a.shape) * sa[:, None]
    eb = torch.randn(b.shape) * sb[:, None]
    assert sa.min() > 0 and sb.min() > 0
    want = x @ (w0 + (b + eb) @ (a + ea)).T + b0
    torch.testing.assert_close(out.detach(), want, atol=1e-5, rtol=1e-5)
    model.eval()  # evaluation uses the clean factors
    _check(model, x, w0 + b @ a, b0)


def test_block_lora_shares_one_down_projection_over_input_blocks():
    model, w0, b0, x, y = _trained("block_lora", r=2, alpha=4.0, n_blocks=3)
    m = methods(model)[0]
    a_s, b = m.A_s.detach(), m.B.detach()
    assert a_s.shape == (2, 4) and b.abs().min() > 1e-4
    blocks = x.reshape(24, 3, 4)
    folded = blocks[:, 0] + blocks[:, 1] + blocks[:, 2]
    with torch.no_grad():
        torch.testing.assert_close(model(x), x @ w0.T + b0 + 2.0 * folded @ a_s.T @ b.T,
                                   atol=1e-5, rtol=1e-5)  # fmt: skip
    _check(model, x, w0 + 2.0 * b @ torch.cat([a_s, a_s, a_s], 1), b0)
