"""What makes each method more than LoRA, checked after a few optimizer steps from a fixed
seed against a reference written here in plain torch (never the method's own code):
FoRA's frequency branch and learned band mask, Comp-LoRA's protected subspace, LARGO's
binding and learned radius, GORP's stored gradient space, DiffoRA's gate, AltLoRA's
alternation, S2-LoRA's threshold from its own group's lr."""

import math

import torch
import torch.nn.functional as F
from torch import nn

from lorakit.core import inject, make_config, methods, protocol
from lorakit.core.methods.gorp import full_weights


def _dense(model, d_in):
    """The model's effective weight ``W`` of a single Linear (output on the identity)."""
    with torch.no_grad():
        out = model(torch.eye(d_in))
        return (out - model(torch.zeros(1, d_in))).T


def _step(model, opt, loss):
    opt.zero_grad()
    loss.backward()
    protocol.before_step(model, opt)
    opt.step()
    protocol.after_step(model, opt)


# ---------------------------------------------------------------------------- FoRA


def _radial_mask(m: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """``M`` spread over the FULL fft2 grid (r, h, w): cell (ky, kx) has frequencies
    ``f = k / n`` folded to [-1/2, 1/2), radius ``sqrt(fy^2 + fx^2) / sqrt(1/2)``, band
    ``min(floor(rho * n_bands), n_bands - 1)`` (METHODS.md, FoRA)."""
    n_bands = m.shape[1]
    full = torch.zeros(m.shape[0], h, w)
    for ky in range(h):
        for kx in range(w):
            fy = ky / h if ky < (h + 1) // 2 else ky / h - 1
            fx = kx / w if kx < (w + 1) // 2 else kx / w - 1
            rho = math.sqrt(fy * fy + fx * fx) / math.sqrt(0.5)
            full[:, ky, kx] = m[:, min(int(rho * n_bands), n_bands - 1)]
    return full


def test_fora_frequency_branch_acts_and_its_band_mask_learns():
    torch.manual_seed(0)
    lin = nn.Linear(6, 5)
    w0, b0 = lin.weight.detach().clone(), lin.bias.detach().clone()
    model = nn.Sequential(lin)
    inject(model, make_config("fora", r=3, alpha=3.0, n_bands=4, targets=("0",)))
    m = methods(model)[0]
    x = torch.randn(2, 4, 6, 6)  # (N, H, W, C) tokens on a 4 x 6 grid
    y = torch.randn(2, 4, 6, 5)
    opt = torch.optim.Adam(m.parameters(), lr=0.05)
    for _ in range(4):
        _step(model, opt, (model(x) - y).pow(2).mean())
    mask = m.M.detach()
    assert mask.abs().min() > 1e-3  # every (rank, band) value of the mask moved from 0
    assert len({round(float(v), 6) for v in mask.flatten()}) == mask.numel()
    # reference: z = A x per token, z_f = Re ifft2(M_full * fft2(z)) over the grid
    z = (x @ m.A.detach().T).permute(0, 3, 1, 2)  # (N, r, H, W)
    zf = torch.fft.ifft2(_radial_mask(mask, 4, 6) * torch.fft.fft2(z)).real
    zz = (z + zf).permute(0, 2, 3, 1)
    expect = x @ w0.T + b0 + 1.0 * zz @ m.B.detach().T
    with torch.no_grad():
        out = model(x)
        torch.testing.assert_close(out, expect, atol=1e-5, rtol=1e-5)
        without = (x @ w0.T + b0) + z.permute(0, 2, 3, 1) @ m.B.detach().T
        assert (out - without).abs().max() > 1e-2  # the learned mask changes the output


# ---------------------------------------------------------------------------- Comp-LoRA


def _spectrum_weight(d_out, d_in, s):
    u, _ = torch.linalg.qr(torch.randn(d_out, d_out))
    v, _ = torch.linalg.qr(torch.randn(d_in, d_in))
    return (u[:, : len(s)] * torch.tensor(s)) @ v[:, : len(s)].T


def test_comp_lora_update_has_no_component_in_u_k_after_steps():
    torch.manual_seed(0)
    lin = nn.Linear(16, 12)
    with torch.no_grad():  # energies 100, 36, 9, 4, ...: the 0.9 rule gives k = 2
        lin.weight.copy_(_spectrum_weight(12, 16, [10.0, 6.0, 3.0, 2.0, 1.0, 0.5, 0.3]))
    w0 = lin.weight.detach().clone().double()
    model = nn.Sequential(lin)
    inject(model, make_config("comp_lora", r=3, alpha=6.0, targets=("0",)))
    m = methods(model)[0]
    x, y = torch.randn(32, 16), torch.randn(32, 12)
    opt = torch.optim.Adam(m.parameters(), lr=0.05)
    for _ in range(4):
        _step(model, opt, (model(x) - y).pow(2).mean())
    u, s, _ = torch.linalg.svd(w0)
    energy = (s**2).cumsum(0) / (s**2).sum()
    k = next(i + 1 for i in range(len(s)) if energy[i] >= 0.9)
    assert k == 2
    u_k = u[:, :k]
    dw = _dense(model, 16).double() - w0
    assert dw.abs().max() > 1e-2  # it trained
    assert (u_k.T @ dw).abs().max() < 1e-6 * dw.abs().max()
    # and everything outside U_k is kept: dW = s (I - U_k U_k^T) B A
    b, a = m.B.detach().double(), m.A.detach().double()
    torch.testing.assert_close(dw, 2.0 * (b - u_k @ (u_k.T @ b)) @ a, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------- LARGO


def test_largo_radius_binds_every_step_and_follows_its_own_gradient():
    torch.manual_seed(0)
    lin = nn.Linear(16, 12)
    w0 = lin.weight.detach().clone()
    model = nn.Sequential(lin)
    mu, gamma0 = 0.005, 0.05
    inject(model, make_config("largo", r=2, alpha=2.0, mu=mu, gamma_init=gamma0, targets=("0",)))
    m = methods(model)[0]
    x, y = torch.randn(32, 16), torch.randn(32, 12)
    opt = torch.optim.Adam([m.A, m.B], lr=0.05)
    loss = lambda: (model(x) - y).pow(2).mean()  # noqa: E731
    _step(model, opt, loss())  # step 0: D = 0, the radius is not active and stays
    assert abs(float(m.gamma) - gamma0) < 1e-7
    for t in range(3):
        gamma = float(m.gamma)
        dw = _dense(model, 16) - w0
        # it binds: the update is clipped to exactly the radius
        assert abs(float(dw.norm()) - gamma) < 1e-4 * gamma, t
        # dL/dgamma of L(W0 + gamma D / ||D||), by autograd on a plain function
        d = m.s * (m.B.detach() @ m.A.detach() - m.B0 @ m.A0)
        g = torch.tensor(gamma, requires_grad=True)
        w = w0 + g * d / d.norm()
        grad_gamma = torch.autograd.grad((F.linear(x, w, lin.bias) - y).pow(2).mean(), g)[0]
        _step(model, opt, loss())
        if t == 0:  # the radius's first Adam step: gamma - mu * g / (|g| + 1e-8)
            expect = max(
                0.1 * gamma0, gamma - mu * float(grad_gamma) / (abs(float(grad_gamma)) + 1e-8)
            )
            assert abs(float(m.gamma) - expect) < 1e-6
    assert abs(float(m.gamma) - gamma0) > 0.5 * mu  # the radius moved


# ---------------------------------------------------------------------------- GORP


def test_gorp_later_task_avoids_the_space_the_first_task_used():
    """With ``energy_cl = 1`` and one projection per task (``T`` > steps), the stored space
    is the column space of task 0's full-weight change, computed here by SVD of the weight
    difference; task 1's change has no component in it."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 16), nn.Tanh(), nn.Linear(16, 8))
    inject(model, make_config("gorp", r=2, alpha=4.0, r_g=3, T=100, energy_cl=1.0, targets=("0",)))
    x = torch.randn(24, 32)
    ys = [torch.randn(24, 8), torch.randn(24, 8)]
    opt = protocol.method_optimizer(model, lr=1e-2)
    ((_, w),) = full_weights(model)
    start = w.detach().clone()
    for task, y in enumerate(ys):
        for _ in range(5):
            opt.zero_grad()
            (model(x) - y).pow(2).mean().backward()
            opt.step()
        if task == 0:
            dw0 = (w.detach() - start).double()  # (16 x 32): m <= n, columns = outputs
            protocol.end_task(model, opt)
            start = w.detach().clone()
    dw1 = (w.detach() - start).double()
    u, s, _ = torch.linalg.svd(dw0)
    assert s[2] > 1e-3 * s[0] and s[3] < 1e-6 * s[0]  # task 0 used a 3-dim space
    used = u[:, :3]
    assert dw1.norm() > 1e-3
    assert (used.T @ dw1).norm() < 1e-5 * dw1.norm()


# ---------------------------------------------------------------------------- DiffoRA


class Parallel(nn.Module):
    def __init__(self, n, d_in, d_out):
        super().__init__()
        self.l = nn.ModuleList(nn.Linear(d_in, d_out) for _ in range(n))

    def forward(self, x):
        return sum(lin(x) for lin in self.l)


def test_diffora_gate_scales_in_search_and_selects_after_it():
    torch.manual_seed(0)
    model = Parallel(4, 8, 6)
    base = [(lin.weight.detach().clone(), lin.bias.detach().clone()) for lin in model.l]
    names = tuple(f"l.{i}" for i in range(4))
    inject(model, make_config("diffora", r=2, alpha=2.0, search_steps=3, keep=0.5, targets=names))
    ms = methods(model)
    x, y = torch.randn(16, 8), torch.randn(16, 6)
    opt = torch.optim.Adam(protocol.param_groups(model, 0.05), lr=0.05)
    for _ in range(3):
        opt.zero_grad()
        (model(x) - y).pow(2).mean().backward()
        protocol.before_step(model, opt)
        opt.step()
        with torch.no_grad():  # relaxed: every module adds sigmoid(beta) * s * B A x
            for lin, (w, b), m in zip(model.l, base, ms, strict=True):
                gate = torch.sigmoid(m.beta)
                expect = F.linear(x, w + gate * (m.B @ m.A), b)
                torch.testing.assert_close(lin(x), expect, atol=1e-6, rtol=1e-6)
            betas = [float(m.beta) for m in ms]
            relaxed = [lin(x) for lin in model.l]
        protocol.after_step(model, opt)
    assert len(set(betas)) == 4
    chosen = sorted(range(4), key=lambda i: betas[i], reverse=True)[:2]
    with torch.no_grad():
        for i, (lin, (w, b)) in enumerate(zip(model.l, base, strict=True)):
            if i in chosen:  # kept, gate folded in: the output is continuous
                torch.testing.assert_close(lin(x), relaxed[i], atol=1e-6, rtol=1e-6)
                assert (lin(x) - F.linear(x, w, b)).abs().max() > 1e-3
            else:  # gate off: exactly the base layer
                assert torch.equal(lin(x), F.linear(x, w, b))


# ---------------------------------------------------------------------------- AltLoRA


def _damped_inv(m, damping):
    r = m.shape[0]
    return torch.linalg.inv(m + (damping * torch.trace(m) / r + 1e-12) * torch.eye(r))


def test_altlora_alternates_b_then_a_with_projected_momentum_steps():
    """A reference AltLoRA (METHODS.md): B-step ``B -= lr * ema(grad_B (AA^T)^-1 / s^2)``,
    A-step ``A -= lr * ema((B^TB)^-1 grad_A / s^2)``, each EMA bias-corrected and carried
    into the other factor's new subspace when that factor moves."""
    torch.manual_seed(0)
    lin = nn.Linear(10, 7)
    w0, b0 = lin.weight.detach().clone(), lin.bias.detach().clone()
    model = nn.Sequential(lin)
    lr, beta, damping, s = 0.3, 0.9, 1e-3, 2.0
    inject(model, make_config("altlora", r=3, alpha=6.0, targets=("0",)))
    m = methods(model)[0]
    a, b = m.A.detach().clone(), m.B.detach().clone()
    x, y = torch.randn(20, 10), torch.randn(20, 7)
    opt = protocol.method_optimizer(model, lr=lr)
    mom = {"A": None, "B": None}
    t = {"A": 0, "B": 0}
    for step in range(5):
        a_ = a.clone().requires_grad_(True)
        b_ = b.clone().requires_grad_(True)
        loss = (F.linear(x, w0 + s * b_ @ a_, b0) - y).pow(2).mean()
        ga, gb = torch.autograd.grad(loss, (a_, b_))
        who = "B" if step % 2 == 0 else "A"
        if who == "B":
            g = gb @ _damped_inv(a @ a.T, damping) / s**2
        else:
            g = _damped_inv(b.T @ b, damping) @ ga / s**2
        t[who] += 1
        mom[who] = g * (1 - beta) if mom[who] is None else beta * mom[who] + (1 - beta) * g
        direction = mom[who] / (1 - beta ** t[who])
        if who == "B":
            old, b = b, b - lr * direction
            if mom["A"] is not None:
                mom["A"] = _damped_inv(b.T @ b, damping) @ (b.T @ old) @ mom["A"]
        else:
            old, a = a, a - lr * direction
            mom["B"] = mom["B"] @ (old @ a.T) @ _damped_inv(a @ a.T, damping)
        a_before, b_before = m.A.detach().clone(), m.B.detach().clone()
        opt.zero_grad()
        (model(x) - y).pow(2).mean().backward()
        opt.step()
        moved_a = not torch.equal(m.A, a_before)
        moved_b = not torch.equal(m.B, b_before)
        assert (moved_a, moved_b) == (who == "A", who == "B"), step
        torch.testing.assert_close(m.A.detach(), a, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(m.B.detach(), b, atol=1e-5, rtol=1e-4)


# ---------------------------------------------------------------------------- S2-LoRA


def test_s2_lora_threshold_is_lr_times_xi_of_the_coefficients_own_group():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 8))
    xi = 0.5
    inject(model, make_config("s2_lora", r=4, prox_threshold=xi, beta=0.0, targets=("0", "2")))
    ms = methods(model)
    shared = [ms[0].shared.A, ms[0].shared.B]
    opt = torch.optim.Adam(
        [{"params": shared, "lr": 1e-3}, {"params": [m.lam for m in ms], "lr": 0.2}]
    )
    x, y = torch.randn(16, 8), torch.randn(16, 8)
    for _ in range(3):
        opt.zero_grad()
        (model(x) - y).pow(2).mean().backward()
        protocol.before_step(model, opt)
        opt.step()
        stepped = [m.lam.detach().clone() for m in ms]
        protocol.after_step(model, opt)
        for m, lam in zip(ms, stepped, strict=True):  # soft threshold at 0.2 * xi = 0.1
            expect = torch.sign(lam) * (lam.abs() - 0.2 * xi).clamp_min(0)
            torch.testing.assert_close(m.lam.detach(), expect, atol=1e-7, rtol=0)
