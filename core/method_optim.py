"""``MethodAdamW``: AdamW for every parameter, except those a method's rule steps itself.

Methods that bring their own optimizer (ALLoRA's per-row learning rates, AltLoRA's
alternating projected steps) subclass this: ``owned(p)`` says which parameters the rule
handles, ``step_owned(group)`` updates them; every other parameter of the given groups (a
classifier head, another method's tensors) gets plain decoupled-weight-decay AdamW with the
group's ``lr``, ``betas``, ``eps``, ``weight_decay``, exactly as ``torch.optim.AdamW``.
Param groups keep their meaning, so a training loop's lr schedule drives both parts.
State lives in ``self.state`` (checkpointed by ``state_dict``).
"""

from __future__ import annotations

import torch
from torch import Tensor


class MethodAdamW(torch.optim.Optimizer):
    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2):
        if not lr >= 0:
            raise ValueError(f"optimizer: lr must be >= 0, got {lr!r}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay))

    def owned(self, p: Tensor) -> bool:
        return False

    def adam_direction(self, p: Tensor, grad: Tensor, group: dict) -> Tensor:
        """Bias-corrected ``m / (sqrt(v) + eps)`` for ``grad`` (updates p's moments)."""
        state = self.state[p]
        if not state:
            state["step"] = torch.zeros((), dtype=torch.float32)
            state["exp_avg"] = torch.zeros_like(p)
            state["exp_avg_sq"] = torch.zeros_like(p)
        b1, b2 = group["betas"]
        state["step"] += 1
        t = float(state["step"])
        state["exp_avg"].mul_(b1).add_(grad, alpha=1 - b1)
        state["exp_avg_sq"].mul_(b2).addcmul_(grad, grad, value=1 - b2)
        denom = (state["exp_avg_sq"] / (1 - b2**t)).sqrt_().add_(group["eps"])
        return state["exp_avg"] / (1 - b1**t) / denom

    @torch.no_grad()
    def step_owned(self, group: dict) -> None:
        return None

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None or self.owned(p):
                    continue
                p.mul_(1 - group["lr"] * group["weight_decay"])
                p.add_(self.adam_direction(p, p.grad, group), alpha=-group["lr"])
            self.step_owned(group)
        return loss
