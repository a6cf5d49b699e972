"""SoRA (sparse low-rank adaptation): LoRA with a gate pruned by a proximal step.

``delta(x) = s * B diag(g) A dropout(x)``, ``A (r x d_in)``, ``B (d_out x r)``, gate
``g (r)``. After each optimizer step the gate takes a proximal (soft-threshold) step,
``g <- sign(g) * max(|g| - lr * xi_t, 0)``, ``lr`` the gate's learning rate at that step,
with a sparsifying schedule **(reading)**: ``xi_t = xi * min(1, (t + 1) / xi_ramp)``
(the threshold ramps up from 0, so early training is dense). The gate gets no weight decay
(the proximal step is its regulariser). ``finish()`` (end of training) folds ``g`` into
``B`` and removes the zeroed ranks: what is saved is a plain LoRA of the smaller per-layer
ranks (``A``, ``B`` and a gate of ones; rank 0 where every rank was pruned).
Trainable: ``r * (d_in + d_out + 1)`` per layer. Mergeable: ``dW = s B diag(g) A``.
Defaults: r=8, alpha=8 (s=1, fixed when ranks drop), xi=1e-3, xi_ramp=100, gate init 1
**(reading)**; A Kaiming, B = 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .base import AdapterConfig, SlotInfo
from .ranked import RankedLoRA


@dataclass
class SoRAConfig(AdapterConfig):
    xi: float = 1e-3
    xi_ramp: int = 100
    prox_lr: float = 1e-3  # used only when no optimizer reports the gate's learning rate
    method = "sora"

    def validate(self) -> None:
        super().validate()
        if self.xi < 0 or self.xi_ramp < 1 or self.prox_lr < 0:
            raise ValueError("sora: xi and prox_lr must be >= 0 and xi_ramp >= 1")


class SoRA(RankedLoRA):
    name = "sora"
    test_hyper = {"alpha": 1.0}  # a third factor (the gate): a smaller scale keeps SGD stable
    formula = "r*(d_in + d_out + 1) per layer (zeroed ranks removed at the end)"
    rank_vectors = ("g",)
    param_options = {"g": {"weight_decay": 0.0}}
    step_lr_tensor = "g"  # the proximal step is lr * xi with the gate's own lr (not A's)

    def __init__(self, cfg: SoRAConfig, slot: SlotInfo):
        super().__init__(cfg, slot)
        self.g = nn.Parameter(torch.ones(self.r))
        self.xi, self.xi_ramp, self.prox_lr = cfg.xi, cfg.xi_ramp, cfg.prox_lr
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("finished", torch.zeros((), dtype=torch.bool))
        self.step_lr: float | None = None

    def factors(self) -> tuple[Tensor, Tensor]:
        a, b = super().factors()
        return (a, b) if self.r == 0 else (a, b * self.g)

    def threshold(self) -> float:
        """``lr * xi_t`` of the coming proximal step."""
        t = int(self.steps)
        lr = self.prox_lr if self.step_lr is None else self.step_lr
        return lr * self.xi * min(1.0, (t + 1) / self.xi_ramp)

    @torch.no_grad()
    def after_step(self) -> None:
        if bool(self.finished):
            return
        thr = self.threshold()
        self.g.copy_(torch.sign(self.g) * (self.g.abs() - thr).clamp_min(0))
        self.steps += 1

    def active_rank(self) -> int:
        return int((self.g != 0).sum())

    @torch.no_grad()
    def finish(self) -> None:
        """Fold the gate into ``B`` and drop the ranks whose gate is exactly 0."""
        keep = torch.nonzero(self.g != 0).flatten()
        self.B.mul_(self.g)
        self.g.fill_(1.0)
        self.resize_rank(keep)
        self.finished.fill_(True)
