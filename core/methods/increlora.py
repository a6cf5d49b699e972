"""IncreLoRA: start at a small rank and add ranks where the importance is highest.

A LoRA (``delta = s B A x``) whose rank grows. Importance of a slot **(reading of the
paper and METHODS.md)**: the smoothed sensitivity of its tensors,
``I_t = beta * I_{t-1} + (1 - beta) * mean(|theta * grad|)`` over all entries of ``A`` and
``B`` (measured before each optimizer step). Every ``interval`` steps after ``warmup``,
the ``per_step`` slots with the highest ``I`` (and rank below ``min(d_out, d_in)``) get one
more rank each, while the model's total rank stays within ``budget_r * n_slots``. A new
rank has an ``A`` row Kaiming and a ``B`` column 0, so adding it does not change the
output; Adam moments of the existing ranks are kept, the new rank's start at 0.
Trainable: ``r_l * (d_in + d_out)`` per layer, ``r_l`` the layer's current rank (total at
most ``budget_r * n_slots * (d_in + d_out)``). Mergeable: ``dW = s B A``.
Defaults: r=2 (initial), alpha=2 (s=1, fixed while ranks grow), budget_r=8, interval=20,
warmup=20, per_step=2, beta=0.85.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .base import AdapterConfig, SlotInfo
from .ranked import RankedLoRA


@dataclass
class IncreLoRAConfig(AdapterConfig):
    r: int = 2
    alpha: float = 2.0
    budget_r: int = 8
    interval: int = 20
    warmup: int = 20
    per_step: int = 2
    beta: float = 0.85
    method = "increlora"

    def validate(self) -> None:
        super().validate()
        if self.budget_r < self.r:
            raise ValueError(f"increlora: budget_r ({self.budget_r}) must be >= r ({self.r})")
        if self.interval < 1 or self.warmup < 0 or self.per_step < 1:
            raise ValueError("increlora: interval and per_step must be >= 1, warmup >= 0")
        if not 0 <= self.beta < 1:
            raise ValueError(f"increlora: beta must be in [0, 1), got {self.beta!r}")


class IncreLoRA(RankedLoRA):
    name = "increlora"
    formula = "r_l*(d_in + d_out) per layer, sum of r_l <= budget_r * n_layers"

    def __init__(self, cfg: IncreLoRAConfig, slot: SlotInfo):
        super().__init__(cfg, slot)
        self.cfg_i = cfg
        self.register_buffer("score", torch.zeros(()))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def before_step(self) -> None:
        parts = [(p * p.grad).abs().flatten() for p in (self.A, self.B) if p.grad is not None]
        if parts and self.r > 0:
            sens = torch.cat(parts).float().mean()
            if torch.isfinite(sens):
                b = self.cfg_i.beta
                self.score.mul_(b).add_((1 - b) * sens)

    @torch.no_grad()
    def after_step(self) -> None:
        self.steps += 1

    @staticmethod
    @torch.no_grad()
    def model_after_step(model: nn.Module) -> None:
        """Grow the ranks of the most important slots (one decision over all layers)."""
        for group in _groups(model).values():
            _grow(group)

    def grow(self, n: int = 1) -> None:
        self.resize_rank(torch.arange(self.r), self.new_rank_values(n))


def _groups(model: nn.Module) -> dict[int, list[IncreLoRA]]:
    """IncreLoRA slots by config (one budget per adapter)."""
    out: dict[int, list[IncreLoRA]] = {}
    for m in model.modules():
        if isinstance(m, IncreLoRA):
            out.setdefault(id(m.cfg_i), []).append(m)
    return out


def _grow(slots: list[IncreLoRA]) -> None:
    cfg, t = slots[0].cfg_i, int(slots[0].steps)
    if t < cfg.warmup or (t - cfg.warmup) % cfg.interval != 0:
        return
    room = cfg.budget_r * len(slots) - sum(m.r for m in slots)
    open_ = [m for m in slots if m.r < m.max_rank]
    open_.sort(key=lambda m: float(m.score), reverse=True)
    for m in open_[: min(cfg.per_step, max(room, 0))]:
        m.grow(1)
