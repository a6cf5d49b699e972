"""RandLoRA: a full-rank update from ``n`` frozen random rank-``r`` bases with trainable scalings.

Let ``m = min(d_out, d_in)``, ``M = max(d_out, d_in)``, ``n = ceil(m / r)`` (so ``n r >= m``:
full rank). Frozen, shared by the slots of one shape and regenerated from ``seed`` (saved
only with ``save_bases=True``): ``A (r x 1 x m)`` (one random base, as PEFT) and
``B (M x n x r)``, both Kaiming-uniform divided by their std. Trainable:
``lambda (r x n)`` (init 0, so a fresh adapter is the base model) and ``gamma (n x m)``
(init ``1 / M``). The scaled bases ``A'[k, b, :] = lambda[k, b] * A[k, 0, :] * gamma[b, :]``,
flattened to ``(r n x m)``, pair with ``B`` flattened to ``(M x n r)``:
``D = B_flat A'_flat`` (``M x m``), ``dW = s D`` when ``d_out >= d_in`` else ``s D^T``.
Many tokens: ``dW`` is formed once per call and applied densely (cheaper when the token
count exceeds about the layer width); few tokens: the two factors are applied in turn.
(The two flattenings pair column ``b r + k`` of ``B`` with row ``k n + b`` of ``A'``,
exactly as PEFT 0.21.2 does; a test checks equal outputs given the same tensors.)
Trainable: ``n * (r + m)`` per layer. Mergeable. Defaults (as PEFT): r=32, alpha=640
(``s = alpha / r = 20``), seed=0, save_bases=False.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .base import AdapterConfig, Method, SlotInfo
from .vera import kaiming_uniform, shape_key, shared_bases


@dataclass
class RandLoRAConfig(AdapterConfig):
    r: int = 32
    alpha: float = 640.0
    seed: int = 0
    save_bases: bool = False
    method = "randlora"


def _make_bases(r: int, n: int, small: int, big: int):
    def make(g: torch.Generator) -> dict[str, Tensor]:
        a = kaiming_uniform((r, 1, small), g)
        b = torch.cat([kaiming_uniform((big, 1, r), g) for _ in range(n)], 1)
        return {"A": a / a.std(), "B": b / b.std()}

    return make


def dense_is_cheaper(x: Tensor, channel_dim: int, k: int, d_out: int, d_in: int) -> bool:
    """Forming ``dW = up @ down`` once (``k d_out d_in``) and applying it (``T d_out d_in``)
    beats the factored path (``T k (d_in + d_out)``) once there are more tokens ``T`` than
    about the layer width: ``n r ~ min(d_out, d_in)`` makes RandLoRA's factors full rank."""
    tokens = x.numel() // max(x.shape[channel_dim], 1)
    return k * d_out * d_in + tokens * d_out * d_in < tokens * k * (d_in + d_out)


class RandLoRA(Method):
    name = "randlora"
    test_hyper = {"alpha": 0.2}
    not_from_file = frozenset({"conv2d"})  # conv bases come from the kernel geometry, not the file
    formula = "n*(r + min(d_in, d_out)) per layer, n = ceil(min(d_in, d_out) / r)"

    def __init__(self, cfg: RandLoRAConfig, slot: SlotInfo):
        super().__init__(cfg, slot)
        small, big = min(self.d_out, self.d_in), max(self.d_out, self.d_in)
        self.n = math.ceil(small / self.r)
        self.wide = self.d_out >= self.d_in  # D is (d_out x d_in) as computed, else transposed
        self.bases = shared_bases(
            slot,
            "randlora",
            shape_key(slot) + f"r{self.r}",
            cfg.seed,
            cfg.save_bases,
            _make_bases(self.r, self.n, small, big),
        )
        self.lam = nn.Parameter(torch.zeros(self.r, self.n))
        self.gamma = nn.Parameter(torch.full((self.n, small), 1.0 / big))

    def factors(self) -> tuple[Tensor, Tensor]:
        """``(down (n r x d_in), up (d_out x n r))`` with ``dW = up @ down`` (before ``s``)."""
        scaled = (self.lam[:, :, None] * self.bases.A * self.gamma[None]).flatten(0, 1)
        b_flat = self.bases.B.flatten(1)
        if self.wide:
            return scaled, b_flat
        return b_flat.T, scaled.T

    def delta(self, x: Tensor) -> Tensor:
        down, up = self.factors()
        x = self.drop(x)
        if dense_is_cheaper(x, self.ops.channel_dim, down.shape[0], self.d_out, self.d_in):
            return self.ops.down(x, self.s * (up @ down))
        return self.ops.mix(self.ops.down(x, down), up) * self.s

    def delta_weight(self) -> Tensor:
        down, up = self.factors()
        return self.s * (up @ down)
