"""QWHA (quantization-aware Walsh-Hadamard adaptation, ICLR 2026): a sparse spectrum
``F`` under the Walsh-Hadamard kernel, initialised to absorb the base's quantization error.

``dW = s * (F H^-1)[:, :d_in]`` with ``H`` the ``n x n`` Walsh-Hadamard matrix
(``n = d_in`` when one exists, else the next size with one: ``core/hadamard.py``;
``H^-1 = H^T / n``) and ``F (d_out x n)`` zero except ``n_coef`` trainable values at saved
locations ``(row_i, col_i)``. ``delta(x) = dW dropout(x)`` (``dW`` formed per call by the
fast transform, ``O(d_out n log n)``). The authors' layer computes the same thing as
``(x H)(W H + F)^T / n`` (github.com/vantaa89/qwha, ``tuners/qwha/layer.py``).
Initialisation (``absorb``, the authors' ``initialize_adapter`` read with ``R = I``, i.e.
data-free): ``E = W - Q(W)``; its full spectrum ``f = [E, 0] H`` (each output channel's
row); *adaptive parameter selection*: channel ``i`` gets ``k_i`` coefficients, ``k_i``
proportional to ``||f_i||^alloc_power`` (summing to ``n_coef``, at most ``n`` per channel,
the remainder to the channels furthest below their share), at its ``k_i`` largest
``|f_ij|``; *value refinement*: the least-squares values ``c = argmin ||E_i - c B_S||``
over the chosen basis rows ``B_S = (H^-1)[S, :d_in]`` (equal to ``f_S`` when ``n = d_in``,
the basis being orthogonal; it differs when columns were padded). The authors weight this
least-squares fit by calibration activations (``R = (X^T X)^{1/2}``); lorakit's absorb is
data-free (**reading**), so channels and values minimise the weight error, not the output
error on data. ``F`` is stored divided by ``s``.
Used through ``quantize(model, bits=..., adapter=make_config("qwha", ...))``; injected on its
own it starts at random distinct locations with ``F = 0`` (FourierFT-style).
Hyper-parameters: ``n_coef`` (0: ``r * (d_in + d_out)``, the authors' ``match_lora_params``:
as many trainable values as LoRA at rank ``r``), ``alpha`` (``s = alpha``, default 1),
``alloc_power`` (default 1, the authors' ``ALPHA``). Trainable: ``n_coef`` per layer.
Mergeable. Defaults: r=8 (sets ``n_coef``), dropout 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..hadamard import hadamard_size, wht
from .base import AdapterConfig, Method, SlotInfo


@dataclass
class QWHAConfig(AdapterConfig):
    alpha: float = 1.0
    n_coef: int = 0
    alloc_power: float = 1.0
    method = "qwha"

    def scale(self) -> float:
        return self.alpha

    def validate(self) -> None:
        super().validate()
        if not isinstance(self.n_coef, int) or self.n_coef < 0:
            raise ValueError(f"qwha: n_coef must be an integer >= 0, got {self.n_coef!r}")
        if self.alloc_power < 0:
            raise ValueError(f"qwha: alloc_power must be >= 0, got {self.alloc_power!r}")


def n_coefficients(cfg: QWHAConfig, d_out: int, d_in: int) -> int:
    return cfg.n_coef or cfg.r * (d_in + d_out)


def allocate(weights: Tensor, total: int, cap: int) -> Tensor:
    """Integers ``k_i <= cap`` summing to ``total``, ``k_i ~ total * w_i / sum w``."""
    share = total * weights / weights.sum().clamp_min(1e-30)
    k = share.floor().clamp(max=cap).long()
    while int(k.sum()) < total:  # the rest: one each, to the channels furthest below
        gap = (share - k).masked_fill(k >= cap, -float("inf"))
        need = total - int(k.sum())
        take = torch.topk(gap, min(need, int((k < cap).sum()))).indices
        k[take] += 1
    return k


class QWHA(Method):
    name = "qwha"
    formula = "n_coef per layer (n_coef = 0: r*(d_in + d_out)); locations are saved buffers"

    def __init__(self, cfg: QWHAConfig, slot: SlotInfo):
        super().__init__(cfg, slot)
        self.n = hadamard_size(self.d_in)
        k = n_coefficients(cfg, self.d_out, self.d_in)
        if k > self.d_out * self.n:
            raise ValueError(
                f"qwha: n_coef={k} is larger than layer {slot.name} allows "
                f"(spectrum {self.d_out}x{self.n}, at most {self.d_out * self.n})"
            )
        flat = torch.randperm(self.d_out * self.n)[:k].sort().values
        self.register_buffer("rows", flat // self.n)
        self.register_buffer("cols", flat % self.n)
        self.coef = nn.Parameter(torch.zeros(k))

    def check_rank(self, r: int, limit: int, slot: SlotInfo) -> None:
        return None  # r only sets n_coef

    def spectrum(self) -> Tensor:
        """The dense ``F (d_out x n)`` (times ``1 / s``)."""
        f = self.coef.new_zeros(self.d_out, self.n)
        return f.index_put((self.rows, self.cols), self.coef)

    def delta_weight(self) -> Tensor:
        return self.s * (wht(self.spectrum(), transpose=True) / self.n)[:, : self.d_in]

    def delta(self, x: Tensor) -> Tensor:
        return self.ops.down(self.drop(x), self.delta_weight())

    @classmethod
    @torch.no_grad()
    def absorb(cls, w: Tensor, spec, cfg: QWHAConfig):
        """Codes ``Q(w)`` and ``{rows, cols, coef}`` with ``Q + dW ~ w`` (module doc)."""
        q = spec.quantize(w)
        err = w - q.dequantize()
        d_out, d_in = w.shape
        n = hadamard_size(d_in)
        f = wht(nn.functional.pad(err, (0, n - d_in)))
        k = allocate(f.norm(dim=1) ** cfg.alloc_power, n_coefficients(cfg, d_out, d_in), n)
        order = f.abs().argsort(dim=1, descending=True)
        keep = torch.arange(n)[None] < k[:, None]  # the k_i largest of row i
        rows = torch.arange(d_out)[:, None].expand(d_out, n)[keep]
        cols = order[keep]
        values = f[rows, cols]
        if n > d_in:  # padded: refine the values by least squares on the truncated basis
            values = refine(err, rows, cols, n)
        idx = torch.argsort(rows * n + cols)
        return q, {"rows": rows[idx], "cols": cols[idx], "coef": values[idx] / cfg.scale()}


def refine(err: Tensor, rows: Tensor, cols: Tensor, n: int) -> Tensor:
    """Per channel ``i``: ``argmin_c ||err_i - c (H^-1)[S_i, :d_in]||``."""
    basis = wht(torch.eye(n, dtype=torch.float64), transpose=True)[:, : err.shape[1]] / n
    out = torch.empty(rows.numel(), dtype=torch.float64)
    for i in rows.unique().tolist():
        sel = (rows == i).nonzero().flatten()
        b = basis[cols[sel]]  # (k_i, d_in)
        sol = torch.linalg.lstsq(b.T, err[i].double()[:, None]).solution
        out[sel] = sol.flatten()
    return out.float()
