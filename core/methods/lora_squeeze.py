"""LoRA-Squeeze, in-tuning: train at a high source rank, anneal the rank while training.

A LoRA (``delta = s B A x``, ``s = alpha / r`` of the *source* rank, fixed) whose rank
follows a linear schedule from ``r`` down to ``target_r`` between steps ``anneal_start``
and ``anneal_start + anneal_steps``: ``r_t = round(r - (r - target_r) * clip((t -
anneal_start) / anneal_steps, 0, 1))``. When ``r_t`` drops, ``B A`` is replaced by its best
rank-``r_t`` approximation, computed exactly from the factors (QR of ``B`` and ``A^T``, SVD
of the ``r x r`` core): ``B = U_k sqrt(S_k)``, ``A = sqrt(S_k) V_k^T``; the optimizer
moments of ``A`` and ``B`` restart (their basis changed). The post-hoc variant, for any
mergeable adapter, is ``lorakit squeeze RUN --rank k`` (``lorakit.core.squeeze``).
Trainable: ``r_t * (d_in + d_out)`` per layer. Mergeable: ``dW = s B A``.
Defaults: r=16, alpha=16, target_r=4, anneal_start=0, anneal_steps=100.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .base import AdapterConfig, SlotInfo, canonical_signs
from .ranked import RankedLoRA


@dataclass
class LoRASqueezeConfig(AdapterConfig):
    r: int = 16
    alpha: float = 16.0
    target_r: int = 4
    anneal_start: int = 0
    anneal_steps: int = 100
    method = "lora_squeeze"

    def validate(self) -> None:
        super().validate()
        if not isinstance(self.target_r, int) or not 0 <= self.target_r <= self.r:
            raise ValueError(
                f"lora_squeeze: target_r must be an integer in [0, r={self.r}], got {self.target_r!r}"
            )
        if self.anneal_start < 0 or self.anneal_steps < 1:
            raise ValueError("lora_squeeze: anneal_start must be >= 0 and anneal_steps >= 1")


def best_rank_k(b: Tensor, a: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """``(B', A')`` with ``B' A'`` the best rank-``k`` approximation of ``B A`` (exact SVD
    through the factors: only ``r x r`` decompositions), pair signs as in ``thin_svd``."""
    qb, rb = torch.linalg.qr(b.double())
    qa, ra = torch.linalg.qr(a.double().T)
    u, s, vh = torch.linalg.svd(rb @ ra.T)
    u, vh = canonical_signs(qb @ u[:, :k], vh[:k] @ qa.T)
    root = s[:k].sqrt()
    return (u * root).to(b.dtype), (root[:, None] * vh).to(a.dtype)


class LoRASqueeze(RankedLoRA):
    name = "lora_squeeze"
    test_hyper = {"target_r": 1}
    formula = "r_t*(d_in + d_out) per layer, r_t annealed from r to target_r"

    def __init__(self, cfg: LoRASqueezeConfig, slot: SlotInfo):
        super().__init__(cfg, slot)
        self.source_r, self.sched = cfg.r, cfg
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def scheduled_rank(self, t: int) -> int:
        c = self.sched
        frac = min(1.0, max(0.0, (t - c.anneal_start) / c.anneal_steps))
        return int(round(self.source_r - (self.source_r - c.target_r) * frac))

    @torch.no_grad()
    def squeeze_to(self, k: int) -> None:
        """Replace ``B A`` by its best rank-``k`` approximation (no-op if ``k >= r``)."""
        if k >= self.r:
            return
        b, a = best_rank_k(self.B.data, self.A.data, k)
        self.resize_rank(torch.arange(0), {"A": a, "B": b})

    @torch.no_grad()
    def after_step(self) -> None:
        self.steps += 1
        self.squeeze_to(self.scheduled_rank(int(self.steps)))
