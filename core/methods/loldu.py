"""LoLDU: train a diagonal and one scale inside the LDU decomposition of ``W0``.

``W0 = P L diag(D) U`` (LU with partial pivoting, ``U`` normalised to a unit diagonal;
``k = min(d_out, d_in)``). Frozen buffers, saved with the adapter: ``PL_r = P L[:, :r]``
(``d_out x r``), ``U_r = U[:r]`` (``r x d_in``), ``D_r = D[:r]``. Trainable: the diagonal
``d (r)`` (init ``D_r``) and the scalar ``sigma`` (init ``alpha / r``), as the authors'
code: the adapted weight is ``W_res + sigma P L_r diag(d) U_r`` with
``W_res = W0 - sigma_0 P L_r diag(D_r) U_r``, so it is exactly ``W0`` at init (a test).
The host keeps ``W0``, so the delta is
``dW = P L_r diag(sigma d - sigma_0 D_r) U_r`` (zero at init).
Trainable: ``r + 1`` per layer. Mergeable. Defaults: r=8, alpha=8 (sigma_0 = 1).
A zero pivot (rank-deficient ``W0``) keeps its ``U`` row unnormalised, so
``P L diag(D) U = W0`` still holds.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .base import AdapterConfig, Method, SlotInfo


@dataclass
class LoLDUConfig(AdapterConfig):
    method = "loldu"


def ldu(w: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(P, L, D, U)`` with ``w = P L diag(D) U``; ``U`` unit-diagonal where ``D != 0``."""
    p, low, up = torch.linalg.lu(w)
    d = torch.diagonal(up)
    d = torch.where(d == 0, torch.ones_like(d), d)
    return p, low, d, up / d[:, None]


class LoLDU(Method):
    name = "loldu"
    formula = "r + 1 per layer (P L_r, D_r, U_r frozen buffers)"

    def __init__(self, cfg: LoLDUConfig, slot: SlotInfo):
        super().__init__(cfg, slot)
        p, low, d, up = ldu(slot.weight.double())
        r = self.r
        self.register_buffer("PL_r", (p @ low[:, :r]).float().contiguous())
        self.register_buffer("U_r", up[:r].float().contiguous())
        self.register_buffer("D_r", d[:r].float().contiguous())
        self.register_buffer("sigma0", torch.tensor(float(self.s)))
        self.d = nn.Parameter(d[:r].float().clone())
        self.sigma = nn.Parameter(torch.tensor(float(self.s)))

    def diagonal(self) -> Tensor:
        return self.sigma * self.d - self.sigma0 * self.D_r

    def delta(self, x: Tensor) -> Tensor:
        ops = self.ops
        z = ops.scale_channels(ops.down(self.drop(x), self.U_r), self.diagonal())
        return ops.mix(z, self.PL_r)

    def delta_weight(self) -> Tensor:
        return (self.PL_r * self.diagonal()) @ self.U_r
