"""DRS-LoRA (Dynamic Rank-Selective LoRA, CoDyRA; Lu et al. 2024) for continual learning.

The paper's reading (its abstract and public summaries; its code was not reachable, so
every choice below is a named hyper-parameter): each task trains a LoRA with per-rank
importance weights on every target module, ``delta(x) = s B diag(w) A dropout(x)``, under
a sparsity-promoting L1 term ``lambda ||w||_1`` taken by a proximal step after each
optimizer step, ``w <- sign(w) max(|w| - lr_w lambda_t, 0)`` (``lr_w`` the learning rate of
``w``'s group at that step, ``lambda_t = sparsity * min(1, (t + 1) / sparsity_ramp)``).
The **relevance score** of rank ``i`` of a module is ``|w_i|``: a rank the current task's
gradient does not hold above the shrinkage reaches exactly 0, so each module's rank
``#{i : w_i != 0}`` follows its relevance to the current data (``active_rank``).
At the end of each task (``end_task``, the continual protocol) every slot merges
``s B diag(w) A`` into its base weight (no inference overhead, the model's architecture is
unchanged), records the rank it used (``closed_rank``) and restarts: ``A`` Kaiming (global
RNG, seeded by the caller), ``B = 0``, ``w = w_init``, step count 0.
Trainable per slot: ``r (d_in + d_out + 1)``. Mergeable: ``dW = s B diag(w) A``.
Defaults **(reading)**: r=8, alpha=8, sparsity=0.5, sparsity_ramp=10, w_init=1,
prox_lr=1e-3 (used only when no optimizer reports ``w``'s lr); ``w`` gets no weight decay.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..adapters import named_hosts
from .base import AdapterConfig, FactoredMethod, SlotInfo, kaiming_


@dataclass
class DRSLoRAConfig(AdapterConfig):
    sparsity: float = 0.5
    sparsity_ramp: int = 10
    w_init: float = 1.0
    prox_lr: float = 1e-3
    method = "drs_lora"

    def validate(self) -> None:
        super().validate()
        if self.sparsity < 0 or self.prox_lr < 0 or self.w_init <= 0:
            raise ValueError("drs_lora: sparsity and prox_lr must be >= 0 and w_init > 0")
        if not isinstance(self.sparsity_ramp, int) or self.sparsity_ramp < 1:
            raise ValueError(f"drs_lora: sparsity_ramp must be >= 1, got {self.sparsity_ramp!r}")


@torch.no_grad()
def end_task(model: nn.Module, optimizer: torch.optim.Optimizer | None) -> None:
    """Merge every DRS-LoRA slot's update into its base weight and restart the slot."""
    for _, host in named_hosts(model):
        if host.merged:
            raise ValueError("drs_lora end_task: unmerge the model first (it is merged)")
        for adapter in host.adapters.values():
            for slot, m in adapter.items():
                if isinstance(m, DRSLoRA):
                    w = host.slot_weight(slot)
                    w.add_(m.delta_weight().reshape(w.shape).to(w.dtype))
                    m.restart()


class DRSLoRA(FactoredMethod):
    name = "drs_lora"
    test_hyper = {"alpha": 1.0}  # a third factor (w): a smaller scale keeps SGD stable
    formula = "r*(d_in + d_out + 1) per layer (ranks with w = 0 are unused; merged per task)"
    param_options = {"w": {"weight_decay": 0.0}}
    step_lr_tensor = "w"  # the proximal step uses w's own learning rate
    end_task = staticmethod(end_task)

    def __init__(self, cfg: DRSLoRAConfig, slot: SlotInfo):
        super().__init__(cfg, slot)
        self.A = nn.Parameter(kaiming_(torch.empty(self.r, self.d_in)))
        self.B = nn.Parameter(torch.zeros(self.d_out, self.r))
        self.w = nn.Parameter(torch.full((self.r,), float(cfg.w_init)))
        self.sparsity, self.ramp = cfg.sparsity, cfg.sparsity_ramp
        self.w_init, self.prox_lr = float(cfg.w_init), cfg.prox_lr
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("closed_rank", torch.full((), -1, dtype=torch.long))

    def factors(self) -> tuple[Tensor, Tensor]:
        return self.A, self.B * self.w

    def threshold(self) -> float:
        """``lr_w * lambda_t`` of the coming proximal step."""
        lr = self.prox_lr if self.step_lr is None else self.step_lr
        return lr * self.sparsity * min(1.0, (int(self.steps) + 1) / self.ramp)

    def relevance(self) -> Tensor:
        """The relevance score of each rank: ``|w|`` (0: the rank is not used)."""
        return self.w.detach().abs()

    @torch.no_grad()
    def after_step(self) -> None:
        thr = self.threshold()
        self.w.copy_(torch.sign(self.w) * (self.w.abs() - thr).clamp_min(0))
        self.steps += 1

    def active_rank(self) -> int:
        return int((self.w != 0).sum())

    @torch.no_grad()
    def restart(self) -> None:
        """A fresh task adapter (adds 0); the closed task's rank is kept in ``closed_rank``."""
        self.closed_rank.fill_(self.active_rank())
        kaiming_(self.A)
        self.B.zero_()
        self.w.fill_(self.w_init)
        self.steps.zero_()
