"""Comp-LoRA: LoRA confined to the complement of W0's principal subspace.

``W0 = U S V^T``; ``U_k`` (top-k left singular vectors; ``k`` given, or the smallest k
holding ``energy`` of ``sum S^2``) is a frozen buffer that the base determines: computed at
inject, never saved (``from_base``); the adapter file records a sha256 of each W0 instead,
so a load recomputes it and refuses another base (older files that hold it still load).
``side="output"``: ``delta(x) = s (I - U_k U_k^T) B A x``, computed by projecting the
small factor once per call, ``B' = B - U_k (U_k^T B)`` (cost ``O(d_out k r)``, independent
of the number of tokens), then ``s B' (A x)``: LoRA's cost per token. The d_out x d_out
projector is never formed and no token's output is projected.
``side="input"``: ``s B A (I - V_k V_k^T) x``, as ``A' = A - (A V_k) V_k^T``;
``side="both"``: both projections.
Invariant: ``U_k^T dW = 0``: the principal output directions of W0 never move.
Trainable per slot: ``r * (d_in + d_out)`` (as LoRA). Mergeable: ``dW = s P B A``.
Defaults: energy=0.9 (a reading of the paper's abstract), side="output", r=8, alpha=8.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .base import AdapterConfig, FactoredMethod, SlotInfo, kaiming_, thin_svd

SIDES = ("output", "input", "both")


@dataclass
class CompLoRAConfig(AdapterConfig):
    k: int | None = None
    energy: float = 0.9
    side: str = "output"
    method = "comp_lora"

    def validate(self) -> None:
        super().validate()
        if self.side not in SIDES:
            raise ValueError(f"comp_lora: side must be one of {SIDES}, got {self.side!r}")
        if self.k is None and not 0.0 < self.energy < 1.0:
            raise ValueError(f"comp_lora: energy must be in (0, 1), got {self.energy!r}")
        if self.k is not None and (not isinstance(self.k, int) or self.k < 0):
            raise ValueError(f"comp_lora: k must be a non-negative integer, got {self.k!r}")


def protected_rank(s: Tensor, k: int | None, energy: float) -> int:
    """k given, else the smallest k whose top singular values hold ``energy`` of sum S^2."""
    if k is not None:
        return k
    e = s.double().pow(2)
    frac = torch.cumsum(e, 0) / e.sum().clamp_min(1e-300)
    return int(torch.searchsorted(frac, torch.tensor(energy, dtype=frac.dtype)).item()) + 1


class CompLoRA(FactoredMethod):
    name = "comp_lora"
    test_hyper = {"k": 2}
    formula = "r*(d_in + d_out) per layer (as LoRA; U_k / V_k are frozen buffers)"
    from_base = frozenset({"U_k", "V_k"})  # the SVD of W0: recomputed at load, not saved

    def __init__(self, cfg: CompLoRAConfig, slot: SlotInfo):
        super().__init__(cfg, slot)
        self.side = cfg.side
        u, s, vh = thin_svd(slot.weight.float())
        k = protected_rank(s, cfg.k, cfg.energy)
        if k >= min(slot.d_out, slot.d_in):
            raise ValueError(
                f"comp_lora: protecting k={k} directions of layer {slot.name} "
                f"({slot.d_out}x{slot.d_in}) leaves no room to adapt; lower k or energy"
            )
        self.k = k
        self.A = nn.Parameter(kaiming_(torch.empty(self.r, self.d_in)))
        self.B = nn.Parameter(torch.zeros(self.d_out, self.r))
        out_side, in_side = self.side in ("output", "both"), self.side in ("input", "both")
        self.register_buffer(
            "U_k", u[:, :k].contiguous() if out_side else torch.zeros(slot.d_out, 0)
        )
        self.register_buffer("V_k", vh[:k].T.contiguous() if in_side else torch.zeros(slot.d_in, 0))

    def factors(self) -> tuple[Tensor, Tensor]:
        """``(A', B')``: the projected factors, so that ``dW = s B' A'``."""
        a, b = self.A, self.B
        if self.V_k.shape[1]:
            a = a - (a @ self.V_k) @ self.V_k.T
        if self.U_k.shape[1]:
            # B' = B - U_k (U_k^T B), written on B^T: (r x d_out) @ (d_out x k) keeps the big
            # U_k in its stored layout (5x faster on CPU than U_k.T @ B)
            b = b - ((b.T @ self.U_k) @ self.U_k.T).T
        return a, b
