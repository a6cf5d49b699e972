"""AltLoRA: alternating projected updates of ``B`` and ``A``, momentum in the low-rank spaces.

The layer is LoRA's (``delta = s B A x``); the method brings its optimizer. Steps
alternate, starting with ``B`` (``A`` is random, ``B = 0``): one step updates ``B`` with
``A`` fixed, the next ``A`` with ``B`` fixed. Each uses the gradient projected to best
approximate the full-weight gradient ``G`` (``grad_B = s G A^T``, ``grad_A = s B^T G``):
the ``X`` minimising ``||s X A - G||_F`` is ``grad_B (A A^T)^{-1} / s^2``, so the weight
moves by ``-lr G A^T (A A^T)^{-1} A``, the full gradient projected on ``A``'s row space;
symmetrically ``(B^T B)^{-1} grad_A / s^2`` for ``A``. The inverses are damped
**(reading)**: ``(M + damping * tr(M)/r * I)^{-1}``. Momentum **(reading)**: each factor
keeps an EMA (bias-corrected, ``momentum``) of its projected gradient, of its own shape
(``r x d_in`` or ``d_out x r``: no full-size state); when the other factor changes, the
momentum is carried to the new subspace so it keeps meaning the same weight direction
(``M_B <- M_B A_old A^T (A A^T)^{-1}``, ``M_A <- (B^T B)^{-1} B^T B_old M_A``). Decoupled
weight decay acts on the updated factor. AltLoRA is a (preconditioned) momentum SGD in
weight space: each step moves ``W`` by ``lr`` times the projected gradient, so its step
scales with the gradient's size, unlike Adam's (about ``lr`` per entry whatever the
gradient). Its lr is on another scale than AdamW's: on the README's CLIP compare example
(cross-entropy, gradients of order 1e-3 per weight) validation accuracy was 0.20 / 0.57 /
0.84 at lr 0.1 / 1 / 10, where LoRA with AdamW is best at 3e-3; give ``compare`` an lr grid
of that scale (``--lrs 1,10,30``). Other tensors given to the optimizer (a head) step with
plain AdamW at their group's lr (give a head its own group when AltLoRA's lr is large).
Trainable: ``r*(d_in + d_out)`` per layer. Mergeable: ``dW = s B A``.
Defaults: r=8, alpha=8, momentum=0.9, damping=1e-3.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..method_optim import MethodAdamW
from .base import AdapterConfig, SlotInfo
from .lora import LoRA


@dataclass
class AltLoRAConfig(AdapterConfig):
    momentum: float = 0.9
    damping: float = 1e-3
    method = "altlora"

    def validate(self) -> None:
        super().validate()
        if not 0 <= self.momentum < 1:
            raise ValueError(f"altlora: momentum must be in [0, 1), got {self.momentum!r}")
        if self.damping < 0:
            raise ValueError(f"altlora: damping must be >= 0, got {self.damping!r}")


def damped_inverse(m: Tensor, damping: float) -> Tensor:
    r = m.shape[0]
    lam = damping * float(torch.trace(m)) / r + 1e-12
    return torch.linalg.inv(m + lam * torch.eye(r, dtype=m.dtype, device=m.device))


class AltLoRAOptimizer(MethodAdamW):
    """Alternating projected steps on every AltLoRA slot; AdamW on everything else."""

    def __init__(self, params, slots: list[AltLoRA], **kw):
        self.slots = slots
        self.owner_ids = {id(p) for m in slots for p in (m.A, m.B)}
        super().__init__(params, **kw)

    def owned(self, p: Tensor) -> bool:
        return id(p) in self.owner_ids

    @torch.no_grad()
    def step_owned(self, group: dict) -> None:
        ids = {id(p) for p in group["params"]}
        for m in self.slots:
            if id(m.A) in ids and id(m.B) in ids and m.r > 0:
                self._step_slot(m, group)

    def _moment(self, p: Tensor, beta: float, g: Tensor) -> Tensor:
        st = self.state[p]
        if "alt_m" not in st:
            st["alt_m"], st["alt_t"] = torch.zeros_like(p), torch.zeros((), dtype=torch.float32)
        st["alt_t"] += 1
        st["alt_m"].mul_(beta).add_(g, alpha=1 - beta)
        return st["alt_m"] / (1 - beta ** float(st["alt_t"]))

    def _step_slot(self, m: AltLoRA, group: dict) -> None:
        a, b, s, lr = m.A, m.B, m.s, group["lr"]
        st = self.state[a]
        phase = int(st.setdefault("alt_phase", torch.zeros((), dtype=torch.long)))
        p, other = (b, a) if phase == 0 else (a, b)
        if p.grad is not None:
            if phase == 0:  # B-step: least squares against A's row space
                g = p.grad.float() @ damped_inverse(a.float() @ a.float().T, m.damping) / s**2
            else:
                g = damped_inverse(b.float().T @ b.float(), m.damping) @ p.grad.float() / s**2
            direction = self._moment(p, m.momentum, g.to(p.dtype))
            old = p.detach().clone()
            p.mul_(1 - lr * group["weight_decay"])
            p.sub_(lr * direction)
            self._carry(m, other, old, phase)
        st["alt_phase"].fill_(1 - phase)

    def _carry(self, m: AltLoRA, other: Tensor, old: Tensor, phase: int) -> None:
        """Re-express the other factor's momentum in the changed factor's new subspace."""
        mom = self.state[other].get("alt_m")
        if mom is None:
            return
        if phase == 0:  # B changed: M_A <- (B^T B)^{-1} B^T B_old M_A
            b = m.B.float()
            mom.copy_(damped_inverse(b.T @ b, m.damping) @ (b.T @ old.float()) @ mom.float())
        else:  # A changed: M_B <- M_B A_old A^T (A A^T)^{-1}
            a = m.A.float()
            mom.copy_(mom.float() @ (old.float() @ a.T) @ damped_inverse(a @ a.T, m.damping))


class AltLoRA(LoRA):
    name = "altlora"
    formula = "r*(d_in + d_out) per layer (own optimizer: alternating projected steps)"

    def __init__(self, cfg: AltLoRAConfig, slot: SlotInfo):
        super().__init__(cfg, slot)
        self.momentum, self.damping = cfg.momentum, cfg.damping

    @staticmethod
    def make_optimizer(model: nn.Module, lr: float, params=None, betas=(0.9, 0.999),
                       eps: float = 1e-8, weight_decay: float = 0.0, **unknown):
        if unknown:
            raise ValueError(f"altlora optimizer: unknown option(s) {sorted(unknown)}")
        slots = [m for m in model.modules() if isinstance(m, AltLoRA)]
        if params is None:
            params = [p for p in model.parameters() if p.requires_grad]
        return AltLoRAOptimizer(params, slots, lr=lr, betas=betas, eps=eps,
                                weight_decay=weight_decay)
