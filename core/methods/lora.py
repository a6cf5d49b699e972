"""LoRA (Hu et al. 2021): ``delta(x) = s * B A dropout(x)``.

Trainable per slot: ``r * (d_in + d_out)``. Mergeable: ``W = W0 + s B A``.
Defaults: r=8, alpha=8 (s=1), dropout 0, A Kaiming-uniform(a=sqrt(5)), B = 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .base import AdapterConfig, Method, SlotInfo, kaiming_


@dataclass
class LoRAConfig(AdapterConfig):
    method = "lora"


class LoRA(Method):
    name = "lora"
    formula = "r*(d_in + d_out) per layer"

    def __init__(self, cfg: LoRAConfig, slot: SlotInfo):
        super().__init__(cfg, slot)
        self.A = nn.Parameter(kaiming_(torch.empty(self.r, self.d_in)))
        self.B = nn.Parameter(torch.zeros(self.d_out, self.r))

    def delta(self, x: Tensor) -> Tensor:
        return self.ops.mix(self.ops.down(self.drop(x), self.A), self.B) * self.s

    def delta_weight(self) -> Tensor:
        return self.s * (self.B @ self.A)
