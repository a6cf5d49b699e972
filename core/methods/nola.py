"""NOLA: LoRA whose factors are linear combinations of frozen random bases.

``A = sum_i c_a[i] A_i``, ``B = sum_j c_b[j] B_j`` over ``k`` frozen random bases
``A_i (r x d_in)``, ``B_j (d_out x r)`` (Kaiming-uniform), shared by the slots of one shape
and regenerated from ``seed`` on load (saved only with ``save_bases=True``).
``delta(x) = s * B A dropout(x)``; forming ``A`` and ``B`` costs ``k r (d_in + d_out)`` per
call, independent of the number of tokens.
Trainable: ``2 k`` per layer (``c_a``, ``c_b``). Mergeable: ``dW = s B A``.
Init **(reading)**: ``c_a ~ N(0, 1/k)`` (so ``A`` has LoRA's Kaiming scale), ``c_b = 0`` (a
fresh adapter is the base model). Defaults: k=64, r=8, alpha=8, seed=0, save_bases=False.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .base import AdapterConfig, FactoredMethod, SlotInfo
from .vera import kaiming_uniform, shape_key, shared_bases


@dataclass
class NOLAConfig(AdapterConfig):
    k: int = 64
    seed: int = 0
    save_bases: bool = False
    method = "nola"

    def validate(self) -> None:
        super().validate()
        if not isinstance(self.k, int) or self.k < 1:
            raise ValueError(
                f"nola: k (number of random bases) must be a positive integer, got {self.k!r}"
            )


class NOLA(FactoredMethod):
    name = "nola"
    test_hyper = {"k": 4, "alpha": 0.2}
    not_from_file = frozenset({"conv2d"})  # conv bases come from the kernel geometry, not the file
    formula = "2*k per layer (k random bases per factor, shared per shape, regenerated from seed)"

    def __init__(self, cfg: NOLAConfig, slot: SlotInfo):
        super().__init__(cfg, slot)
        k, r, d_out, d_in = cfg.k, self.r, self.d_out, self.d_in
        self.bases = shared_bases(
            slot,
            "nola",
            shape_key(slot) + f"r{r}k{k}",
            cfg.seed,
            cfg.save_bases,
            lambda g: {
                "A": torch.stack([kaiming_uniform((r, d_in), g) for _ in range(k)]),
                "B": torch.stack([kaiming_uniform((d_out, r), g) for _ in range(k)]),
            },
        )
        self.c_a = nn.Parameter(torch.randn(k) / k**0.5)
        self.c_b = nn.Parameter(torch.zeros(k))

    def factors(self) -> tuple[Tensor, Tensor]:
        a = torch.einsum("k,krd->rd", self.c_a, self.bases.A)
        b = torch.einsum("k,kor->or", self.c_b, self.bases.B)
        return a, b
