"""SVFit: fine-tune only the top-``r`` singular values of ``W0``.

``W0 = U S V^T``; the top-``r`` singular triplets ``U_r (d_out x r)``, ``S_r (r)``,
``V_r^T (r x d_in)`` are frozen buffers saved with the adapter. Trainable: ``delta_s (r)``,
init 0: ``dW = U_r diag(delta_s) V_r^T``, i.e. the top singular values become
``S_r + delta_s`` and ``W0 = U_r diag(S_r) V_r^T + W_res`` is reconstructed exactly at init
(a test). ``delta(x) = U_r (delta_s * (V_r^T dropout(x)))``: rank ``r`` per token.
Trainable: ``r`` per layer. Mergeable. Defaults: r=8; no alpha scaling (``alpha`` ignored).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .base import AdapterConfig, Method, SlotInfo, thin_svd


@dataclass
class SVFitConfig(AdapterConfig):
    method = "svfit"


class SVFit(Method):
    name = "svfit"
    formula = "r per layer (U_r, S_r, V_r frozen buffers)"

    def __init__(self, cfg: SVFitConfig, slot: SlotInfo):
        super().__init__(cfg, slot)
        self.s = 1.0
        u, s, vh = thin_svd(slot.weight.float())
        r = self.r
        self.register_buffer("U_r", u[:, :r].contiguous())
        self.register_buffer("S_r", s[:r].contiguous())
        self.register_buffer("Vh_r", vh[:r].contiguous())
        self.delta_s = nn.Parameter(torch.zeros(r))

    def delta(self, x: Tensor) -> Tensor:
        ops = self.ops
        z = ops.scale_channels(ops.down(self.drop(x), self.Vh_r), self.delta_s)
        return ops.mix(z, self.U_r)

    def delta_weight(self) -> Tensor:
        return (self.U_r * self.delta_s) @ self.Vh_r
