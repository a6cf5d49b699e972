"""ALLoRA: LoRA without dropout and without scaling, with per-row adaptive learning rates.

``delta(x) = B A x`` (``s = 1``, no dropout: both are refused if set), ``A (r x d_in)``
Kaiming, ``B (d_out x r)`` 0. The method brings its optimizer (``make_optimizer``): AdamW
in which every row ``i`` of ``A`` and of ``B`` moves with its own learning rate,
inversely proportional to the row's norm **(reading of the paper's coefficient)**:
``lr_i = lr / sqrt(||theta_i||^2 + 1 / eta^2)`` (``eta`` bounds the rate of a zero row,
so ``B``'s rows escape 0 at ``lr * eta``). Other tensors the optimizer gets (a head) step
with plain AdamW.
Trainable: ``r*(d_in + d_out)`` per layer. Mergeable: ``dW = B A``.
Defaults: r=8, eta=1.0 (alpha and dropout have no effect and must stay at their defaults).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..method_optim import MethodAdamW
from .base import AdapterConfig, SlotInfo
from .lora import LoRA


@dataclass
class ALLoRAConfig(AdapterConfig):
    eta: float = 1.0
    method = "allora"

    def validate(self) -> None:
        super().validate()
        if self.dropout != 0.0:
            raise ValueError("allora: it uses no dropout; leave dropout at 0")
        if self.rslora:
            raise ValueError("allora: it uses no scaling factor; rslora does not apply")
        if not self.eta > 0:
            raise ValueError(f"allora: eta must be > 0, got {self.eta!r}")

    def scale(self) -> float:
        return 1.0


def row_lrs(p: Tensor, lr: float, eta: float) -> Tensor:
    """ALLoRA's learning rate of every row of ``p``: ``lr / sqrt(||row||^2 + 1/eta^2)``."""
    return lr / torch.sqrt(p.detach().float().pow(2).sum(1) + 1.0 / eta**2)


class ALLoRAOptimizer(MethodAdamW):
    """AdamW with ALLoRA's per-row learning rates on the ALLoRA tensors ``owners`` lists."""

    def __init__(self, params, owners: dict[int, float], **kw):
        self.owners = owners  # id(parameter) -> eta
        super().__init__(params, **kw)

    def owned(self, p: Tensor) -> bool:
        return id(p) in self.owners

    @torch.no_grad()
    def step_owned(self, group: dict) -> None:
        for p in group["params"]:
            if p.grad is None or not self.owned(p):
                continue
            rates = row_lrs(p, group["lr"], self.owners[id(p)]).to(p.dtype)[:, None]
            direction = self.adam_direction(p, p.grad, group)
            p.mul_(1 - rates * group["weight_decay"])
            p.sub_(rates * direction)


class ALLoRA(LoRA):
    name = "allora"
    formula = "r*(d_in + d_out) per layer"

    def __init__(self, cfg: ALLoRAConfig, slot: SlotInfo):
        super().__init__(cfg, slot)
        self.eta = cfg.eta

    @staticmethod
    def make_optimizer(model: nn.Module, lr: float, params=None, betas=(0.9, 0.999),
                       eps: float = 1e-8, weight_decay: float = 0.0, **unknown):
        if unknown:
            raise ValueError(f"allora optimizer: unknown option(s) {sorted(unknown)}")
        owners = {id(p): m.eta for m in model.modules() if isinstance(m, ALLoRA)
                  for p in (m.A, m.B)}
        if params is None:
            params = [p for p in model.parameters() if p.requires_grad]
        return ALLoRAOptimizer(params, owners, lr=lr, betas=betas, eps=eps,
                               weight_decay=weight_decay)
