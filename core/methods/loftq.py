"""LoftQ-style initialisation (Li et al. 2023): LoRA whose initial ``B A`` absorbs the
quantization error of the base, by alternating quantization and truncated SVD.

Starting from ``L = 0``, ``loftq_iter`` times: ``Q = quant(W - L)``, ``L = SVD_r(W - Q)``
(the best rank-``r`` approximation); the base stores ``Q``'s codes and the adapter starts
at ``s B A = L`` (``B = U_r S_r^{1/2} / sqrt(s)``, ``A = S_r^{1/2} V_r^T / sqrt(s)``), so
``Q + s B A ~ W`` before any step. Then it trains as LoRA (``delta = s B A dropout(x)``).
Used through ``quantize(model, bits=..., adapter=make_config("loftq", ...))``, which gives
``absorb`` each slot's float weight; injected on its own (no float weight to absorb) it
starts as LoRA does (``B = 0``).
Hyper-parameters: ``loftq_iter`` (default 5, the paper's alternating steps; PEFT's
``loftq_iter`` default is 1). Quantizer: lorakit's group NF/int (``quantize``'s ``bits``,
``scheme``, ``group_size``), not the paper's uniform/NF4 kernels (**reading**).
Trainable per slot: ``r * (d_in + d_out)``. Mergeable: ``W = Q + s B A``. Defaults: r=8,
alpha=8 (s=1), dropout 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..method import canonical_signs
from .lora import LoRA, LoRAConfig


@dataclass
class LoftQConfig(LoRAConfig):
    loftq_iter: int = 5
    method = "loftq"

    def validate(self) -> None:
        super().validate()
        if not isinstance(self.loftq_iter, int) or self.loftq_iter < 1:
            raise ValueError(f"loftq: loftq_iter must be a positive integer, got {self.loftq_iter!r}")


def svd_factors(m: Tensor, r: int) -> tuple[Tensor, Tensor]:
    """``(A (r x d_in), B (d_out x r))`` with ``B A`` the best rank-``r`` approximation of
    ``m`` and the singular values split evenly between them.

    Through the eigen-decomposition of the smaller Gram matrix in float64 (``m^T m = V S^2
    V^T`` for a tall ``m``, then ``U = m V / S``): the same top-``r`` factors as a full SVD
    at a fraction of its cost on ``(4d, d)`` MLP matrices. Pair signs as in ``thin_svd``
    (``canonical_signs``), so the init does not depend on the machine."""
    m = m.double()
    tall = m.shape[0] >= m.shape[1]
    ev, vec = torch.linalg.eigh(m.T @ m if tall else m @ m.T)
    s = ev.flip(0)[:r].clamp_min(0).sqrt()
    vec = vec.flip(1)[:, :r]
    inv = torch.where(s > 0, 1 / s, torch.zeros_like(s))
    u, vh = ((m @ vec) * inv, vec.T) if tall else (vec, inv[:, None] * (vec.T @ m))
    u, vh = canonical_signs(u, vh)  # eigh's signs vary by machine like an SVD's
    root = s.sqrt()
    return (root[:, None] * vh).float(), (u * root).float()


class LoftQ(LoRA):
    name = "loftq"
    formula = "r*(d_in + d_out) per layer; init absorbs W - Q (quantize(..., adapter=))"

    @classmethod
    @torch.no_grad()
    def absorb(cls, w: Tensor, spec, cfg: LoftQConfig):
        """Codes ``Q`` and ``{"A", "B"}`` with ``Q + s B A ~ w`` (see the module doc)."""
        low = torch.zeros_like(w)
        for _ in range(cfg.loftq_iter):
            q = spec.quantize(w - low)
            a, b = svd_factors(w - q.dequantize(), cfg.r)
            low = b @ a
        root = math.sqrt(cfg.scale())
        return q, {"A": a / root, "B": b / root}
