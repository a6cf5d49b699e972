"""TLoRA (Tao et al. 2025, transformed low-rank adaptation via tensor decomposition).

The paper's reading (arXiv 2501.08727, section 3): the adapted layer is
``y = (W0 T + Delta) x``: a full-rank, dense, learnable transform ``T (d_in x d_in)`` of the
pretrained weight plus a compact residual ``Delta (d_out x d_in)``. So
``delta(x) = W0 (T - I) x + Delta x`` and ``dW = W0 (T - I) + Delta`` (mergeable).

Tensorization (little-endian, the paper's convention): ``d = prod_k n_k`` with the flat index
``i = i_1 + n_1 i_2 + n_1 n_2 i_3 + ...``; each size is split into ``order`` balanced factors
(``factorize``). **Transform** (tensor-ring matrix, TRM): cores ``A_k (n_k, n_k, Rt, Rt)``,
``Rt = transform_rank``, ``T[i, j] = tr(A_1[i_1, j_1] ... A_D[i_D, j_D])``; full rank and
dense when the cores are. Init (the paper's Proposition 1): ``A_k[:, :, a, b] = I / Rt``,
so ``T = I`` and a fresh adapter is the base model. ``O(D d_in^(2/D) Rt^2)`` parameters.
**Residual** (tensor ring, TR; ``residual_form="train"``: tensor train, its two boundary
ranks 1): cores ``B_k (m_k, R, R)`` over the ``d_out`` factors, then ``C_k (n_k, R, R)``
over the ``d_in`` factors, ``R = r``,
``Delta[i, j] = tr(B_1[i_1] ... B_D[i_D] C_1[j_1] ... C_D[j_D])``; it is a product of a
``(d_out, R^2)`` and an ``(R^2, d_in)`` matrix (``R`` for a train), applied per token as
such. Init (the paper's): ``B_1 = 0``, every other core ``N(0, sigma^2)`` with the muP
scale ``sigma = sqrt(r_right) / (mode * r_left)``.
Regularizer (the paper's identity regularization, optional): ``identity_reg *
sum_k sum_{a,b} ||A_k[:, :, a, b] - I / Rt||_F``, zero at init.
Scale: none (the paper's ``W0 T + Delta``); ``alpha`` and ``rslora`` are ignored.
W0 is kept as a buffer that is not saved (rebuilt from the base on load), so the adapter
file alone cannot rebuild the update. Forward: while there are fewer tokens than
``d_out``, ``W0 ((T - I) x)`` per token, else ``W0 (T - I)`` formed once.
Trainable per slot: ``Rt^2 sum_k n_k^2 + sum over the 2D residual cores of
mode * r_left * r_right``. Defaults **(reading: the paper tunes them per model)**:
order=2, transform_rank=2, r=4, residual_form="ring", identity_reg=0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .base import AdapterConfig, Method, SlotInfo

FORMS = ("ring", "train")


@dataclass
class TLoRAConfig(AdapterConfig):
    r: int = 4
    order: int = 2
    transform_rank: int = 2
    residual_form: str = "ring"
    identity_reg: float = 0.0
    method = "tlora"

    def validate(self) -> None:
        super().validate()
        if not isinstance(self.order, int) or self.order < 1:
            raise ValueError(f"tlora: order must be a positive integer, got {self.order!r}")
        if not isinstance(self.transform_rank, int) or self.transform_rank < 1:
            raise ValueError(
                f"tlora: transform_rank must be a positive integer, got {self.transform_rank!r}"
            )
        if self.residual_form not in FORMS:
            raise ValueError(
                f"tlora: residual_form must be one of {FORMS}, got {self.residual_form!r}"
            )
        if self.identity_reg < 0:
            raise ValueError(f"tlora: identity_reg must be >= 0, got {self.identity_reg!r}")


def factorize(n: int, order: int) -> tuple[int, ...]:
    """``order`` factors of ``n`` (product ``n``), as balanced as its primes allow,
    largest first: each prime, largest first, joins the smallest factor so far."""
    primes, p, m = [], 2, n
    while p * p <= m:
        while m % p == 0:
            primes.append(p)
            m //= p
        p += 1
    if m > 1:
        primes.append(m)
    factors = [1] * order
    for q in sorted(primes, reverse=True):
        factors[factors.index(min(factors))] *= q
    return tuple(sorted(factors, reverse=True))


def trm_matrix(cores) -> Tensor:
    """``T[i, j] = tr(A_1[i_1, j_1] ... A_D[i_D, j_D])`` with little-endian flat indices."""
    m = cores[0]
    for a in cores[1:]:
        p, q, r0, _ = m.shape
        n_i, n_j, _, r1 = a.shape
        m = torch.einsum("pqab,ijbc->ipjqac", m, a).reshape(n_i * p, n_j * q, r0, r1)
    return torch.einsum("pqaa->pq", m)


def chain(cores) -> Tensor:
    """``G[i, a, c] = (G_1[i_1] ... G_D[i_D])[a, c]`` with ``i`` little-endian."""
    g = cores[0]
    for c in cores[1:]:
        p, r0, _ = g.shape
        g = torch.einsum("pab,ibc->ipac", g, c).reshape(c.shape[0] * p, r0, c.shape[2])
    return g


class TLoRA(Method):
    name = "tlora"
    not_from_file = None  # W0 (T - I) needs the base weight, not only the file
    formula = "Rt^2 * sum n_k^2 (TRM transform) + sum mode*r_left*r_right (TR residual cores)"

    def __init__(self, cfg: TLoRAConfig, slot: SlotInfo):
        super().__init__(cfg, slot)
        self.s = 1.0
        rt, r, order = cfg.transform_rank, cfg.r, cfg.order
        self.in_modes = factorize(self.d_in, order)
        self.out_modes = factorize(self.d_out, order)
        n_t = rt * rt * sum(n * n for n in self.in_modes)
        if n_t >= self.d_in * self.d_in:
            raise ValueError(
                f"tlora: d_in={self.d_in} of layer {slot.name} splits only into "
                f"{self.in_modes}; its transform would have {n_t} parameters, no fewer than a "
                f"dense {self.d_in}x{self.d_in} matrix (lower transform_rank or raise order)"
            )
        eye = [torch.eye(n)[:, :, None, None].expand(n, n, rt, rt) / rt for n in self.in_modes]
        self.transform = nn.ParameterList([nn.Parameter(e.clone()) for e in eye])
        modes = self.out_modes + self.in_modes
        ranks = [r] * (len(modes) + 1)
        if cfg.residual_form == "train":
            ranks[0] = ranks[-1] = 1
        cores = []
        for k, n in enumerate(modes):
            sigma = math.sqrt(ranks[k + 1]) / (n * ranks[k])
            core = torch.randn(n, ranks[k], ranks[k + 1]) * sigma
            cores.append(nn.Parameter(core.zero_() if k == 0 else core))
        self.residual = nn.ParameterList(cores)
        self.register_buffer("w0", slot.weight.detach().float().clone(), persistent=False)
        self.identity_reg = cfg.identity_reg

    def check_rank(self, r: int, limit: int, slot: SlotInfo) -> None:
        return None  # r is a tensor-ring rank, not bounded by the layer's size

    def transform_matrix(self) -> Tensor:
        """``T (d_in x d_in)``."""
        return trm_matrix(list(self.transform))

    def residual_factors(self) -> tuple[Tensor, Tensor]:
        """``(down (R_0 R_D, d_in), up (d_out, R_0 R_D))`` with ``Delta = up @ down``."""
        d = len(self.out_modes)
        left, right = chain(list(self.residual[:d])), chain(list(self.residual[d:]))
        up = left.reshape(self.d_out, -1)  # [i, (a, b)]
        down = right.permute(2, 1, 0).reshape(-1, self.d_in)  # [(a, b), j] from right[j, b, a]
        return down, up

    def transform_delta(self) -> Tensor:
        """``W0 (T - I)`` of shape ``(d_out, d_in)``."""
        t = self.transform_matrix()
        return self.w0 @ (t - torch.eye(self.d_in, dtype=t.dtype, device=t.device))

    def delta(self, x: Tensor) -> Tensor:
        x = self.drop(x)
        down, up = self.residual_factors()
        res = self.ops.mix(self.ops.down(x, down), up)
        tokens = x.numel() // max(x.shape[self.ops.channel_dim], 1)
        if tokens >= self.d_out:
            return self.ops.down(x, self.transform_delta()) + res
        t = self.transform_matrix()
        eye = torch.eye(self.d_in, dtype=t.dtype, device=t.device)
        return self.ops.mix(self.ops.down(x, t - eye), self.w0) + res

    def delta_weight(self) -> Tensor:
        down, up = self.residual_factors()
        return self.transform_delta() + up @ down

    def regularizer(self) -> Tensor | None:
        if self.identity_reg <= 0:
            return None
        total = 0.0
        for a in self.transform:
            n, rt = a.shape[0], a.shape[2]
            eye = torch.eye(n, dtype=a.dtype, device=a.device)[:, :, None, None] / rt
            total = total + torch.linalg.matrix_norm((a - eye).permute(2, 3, 0, 1)).sum()
        return self.identity_reg * total
