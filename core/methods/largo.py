"""LARGO: low-rank regulated gradient projection with SVD initialisation (OOD robustness).

Init: ``W0 = U S V^T``; take r components (``component="minor"``: the smallest, leaving
the dominant pretrained directions alone; ``"principal"``: the largest):
``B0 = U_r sqrt(S_r)``, ``A0 = sqrt(S_r) V_r^T``. Trainable ``B, A`` start at ``B0, A0``;
frozen copies ``B0, A0`` are buffers saved with the adapter.
Update ``D = s (B A - B0 A0)`` (zero at step 0: the model starts exactly pretrained).
Projection per layer: ``W_eff = W0 + c D``, ``c = min(1, gamma / (||D||_F + eps))``, the
norm computed in low rank, free of cancellation: ``B A - B0 A0 = (B - B0) A + B0 (A - A0)``,
so ``||D||_F^2 = s^2 tr((M^T M)(N N^T))`` with ``M = [B - B0, B0]``, ``N = [A; A - A0]``
(``[B, -B0][A; A0]`` would subtract two large, nearly equal terms in float32), and
``||W_eff - W0||_F <= gamma`` holds at every forward pass by construction.
Forward: ``W0 x + c s M (N x)``, one rank-2r path sharing ``M``, ``N`` with the norm.
Learned radius (after FTP): ``gamma`` is a buffer, not a parameter. A tensor hook on the
delta output ``y = c D x`` accumulates ``g = <dL/dy, y> / gamma`` while the constraint is
active, whenever gradients reach the layer (train() or eval() mode alike); ``after_step``
applies ``gamma <- max(gamma_min, gamma - mu * adam(g))``; a non-finite ``g`` (an
overflowed fp16 step) leaves gamma and the Adam state unchanged.
Trainable per slot: ``r * (d_in + d_out)``. Mergeable: ``W = W0 + c D``.
Defaults (readings): component="minor", gamma_init = 1e-3 * ||W0||_F, mu=1e-2,
gamma_min = 0.1 * gamma_init (a radius never collapses to 0 and freezes its layer), r=8,
alpha=8.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .base import AdapterConfig, Method, SlotInfo, thin_svd

COMPONENTS = ("minor", "principal")


@dataclass
class LARGOConfig(AdapterConfig):
    component: str = "minor"
    gamma_init: float | None = None  # absolute radius; None: gamma_rel * ||W0||_F
    gamma_rel: float = 1e-3
    mu: float = 1e-2
    gamma_min: float | None = None  # None: 0.1 * gamma_init
    eps: float = 1e-8
    method = "largo"

    def validate(self) -> None:
        super().validate()
        if self.component not in COMPONENTS:
            raise ValueError(
                f"largo: component must be one of {COMPONENTS}, got {self.component!r}"
            )
        if self.mu < 0 or (self.gamma_min or 0.0) < 0 or self.gamma_rel <= 0:
            raise ValueError("largo: mu and gamma_min must be >= 0 and gamma_rel > 0")


class LARGO(Method):
    name = "largo"
    formula = "r*(d_in + d_out) per layer (B0, A0, gamma are buffers)"
    betas = (0.9, 0.999)

    def __init__(self, cfg: LARGOConfig, slot: SlotInfo):
        super().__init__(cfg, slot)
        w0 = slot.weight.float()
        u, s, vh = thin_svd(w0)
        idx = slice(-self.r, None) if cfg.component == "minor" else slice(0, self.r)
        root = s[idx].sqrt()
        b0, a0 = u[:, idx] * root, root[:, None] * vh[idx]
        self.B = nn.Parameter(b0.clone())
        self.A = nn.Parameter(a0.clone())
        self.register_buffer("B0", b0.clone())
        self.register_buffer("A0", a0.clone())
        gamma = cfg.gamma_init if cfg.gamma_init is not None else cfg.gamma_rel * float(w0.norm())
        self.register_buffer("gamma", torch.tensor(float(gamma)))
        for name in ("adam_m", "adam_v", "adam_t"):
            self.register_buffer(name, torch.zeros(()))
        self.register_buffer("g_acc", torch.zeros(()), persistent=False)
        self.register_buffer("n_active", torch.zeros(()), persistent=False)
        self.mu, self.eps = cfg.mu, cfg.eps
        self.gamma_min = 0.1 * float(gamma) if cfg.gamma_min is None else cfg.gamma_min

    def factors(self) -> tuple[Tensor, Tensor]:
        """``M = [B - B0, B0]`` (d_out x 2r), ``N = [A; A - A0]`` (2r x d_in): ``M N = BA - B0A0``
        with no cancellation, and exactly 0 at step 0 (both differences are 0)."""
        return torch.cat([self.B - self.B0, self.B0], 1), torch.cat([self.A, self.A - self.A0], 0)

    def update_norm(self, mn: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """``||D||_F`` from 2r x 2r products only (cancellation-free form); differentiable."""
        m, n = mn if mn is not None else self.factors()
        m, n = m.float(), n.float()
        sq = ((m.T @ m) * (n @ n.T)).sum().clamp_min(0)
        return self.s * torch.sqrt(sq + 1e-20)  # the floor keeps the gradient finite at D = 0

    def coefficient(self, mn: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        norm = self.update_norm(mn)
        return torch.clamp(self.gamma / (norm + self.eps), max=1.0), norm

    def delta(self, x: Tensor) -> Tensor:
        ops, x = self.ops, self.drop(x)
        m, n = self.factors()
        c, _ = self.coefficient((m, n))
        d = ops.mix(ops.down(x, n), m)  # one rank-2r path: (B - B0)(A x) + B0((A - A0) x)
        y = d * (self.s * c).to(d.dtype)
        if y.requires_grad:  # gradients flow: learn the radius (train or eval mode)
            active = (c < 1).float().detach()
            y_det, gamma = y.detach(), self.gamma

            def capture(grad: Tensor) -> None:
                with torch.no_grad():
                    self.g_acc += (
                        active * (grad.float() * y_det.float()).sum() / gamma.clamp_min(1e-30)
                    )
                    self.n_active += active

            y.register_hook(capture)
        return y

    def delta_weight(self) -> Tensor:
        m, n = self.factors()
        c, _ = self.coefficient((m, n))
        return (self.s * c) * (m @ n)

    def step_stats(self) -> list[Tensor]:
        """Tensors a distributed run sums across ranks before ``after_step``."""
        return [self.g_acc, self.n_active]

    @torch.no_grad()
    def after_step(self) -> None:
        if float(self.n_active) > 0 and bool(torch.isfinite(self.g_acc)):
            b1, b2 = self.betas
            g = self.g_acc
            self.adam_t += 1
            self.adam_m.mul_(b1).add_((1 - b1) * g)
            self.adam_v.mul_(b2).add_((1 - b2) * g * g)
            m_hat = self.adam_m / (1 - b1**self.adam_t)
            v_hat = self.adam_v / (1 - b2**self.adam_t)
            step = m_hat / (v_hat.sqrt() + 1e-8)
            self.gamma.copy_(torch.clamp(self.gamma - self.mu * step, min=self.gamma_min))
        self.g_acc.zero_()
        self.n_active.zero_()

    @torch.no_grad()
    def test_perturb(self) -> None:
        """A radius that binds, so the contract test exercises the projection."""
        self.gamma.fill_(0.5 * float(self.update_norm()))

    def extra_repr(self) -> str:
        return super().extra_repr() + f", gamma={float(self.gamma):.3g}"
