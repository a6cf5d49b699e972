"""Block-LoRA ("One Head Eight Arms"): one shared down-projection over input blocks.

Split ``x`` into ``n_blocks`` equal channel chunks; ``delta(x) = s * B A_s (x_1 + ... + x_n)``
(additions first, then one small matmul). Dense form ``dW = s * B [A_s ... A_s]``.
Trainable per slot: ``r * (d_out + d_in / n_blocks)``. Mergeable.
Defaults: n_blocks=8, r=8, alpha=8; A_s Kaiming-uniform, B = 0.
On a Conv2d the chunks are input-channel groups (``C_in % n_blocks == 0``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .base import AdapterConfig, Method, SlotInfo, kaiming_


@dataclass
class BlockLoRAConfig(AdapterConfig):
    n_blocks: int = 8
    method = "block_lora"

    def validate(self) -> None:
        super().validate()
        if not isinstance(self.n_blocks, int) or self.n_blocks < 1:
            raise ValueError(
                f"block_lora: n_blocks must be a positive integer, got {self.n_blocks!r}"
            )


class BlockLoRA(Method):
    name = "block_lora"
    test_hyper = {"n_blocks": 4}
    formula = "r*(d_out + d_in/n_blocks) per layer"

    def __init__(self, cfg: BlockLoRAConfig, slot: SlotInfo):
        super().__init__(cfg, slot)
        n = cfg.n_blocks
        kh, kw = self.ops.kernel
        channels = slot.d_in // (kh * kw)
        if channels % n:
            raise ValueError(
                f"block_lora: layer {slot.name} has d_in={channels} input channels, "
                f"not divisible by n_blocks={n}"
            )
        self.n_blocks = n
        self.A_s = nn.Parameter(kaiming_(torch.empty(self.r, slot.d_in // n)))
        self.B = nn.Parameter(torch.zeros(self.d_out, self.r))

    def delta(self, x: Tensor) -> Tensor:
        folded = self.ops.fold(self.drop(x), self.n_blocks)
        return self.ops.mix(self.ops.down(folded, self.A_s), self.B) * self.s

    def dense_A(self) -> Tensor:
        """``[A_s A_s ... A_s]`` laid out as the host's ``(r, d_in)`` weight."""
        kh, kw = self.ops.kernel
        return self.A_s.reshape(self.r, -1, kh * kw).repeat(1, self.n_blocks, 1).reshape(self.r, -1)

    def delta_weight(self) -> Tensor:
        return self.s * (self.B @ self.dense_A())
