"""SLTrain (sparse plus low-rank, Han et al. 2024) as an adapter: ``dW = s B A + S``.

``S (d_out x d_in)`` lives on a fixed random support of ``n = max(1, floor(density *
d_out * d_in))`` entries, drawn once, uniformly without replacement, from a generator seeded
by ``seed`` and the slot's name (so the same model and seed give the same support in a fresh
process), sorted, and stored compactly as the flat indices ``i * d_in + j`` in a saved
``int32`` buffer ``support`` (``int64`` past 2^31 entries). Only the ``n`` values on it
train; the support never changes (no optimizer, hook or load touches it).
``delta(x) = s B A dropout(x) + S dropout(x)`` with ``s = alpha / r`` on the low-rank part
only (the paper's ``x B A alpha / r + x S``).
Memory **(the paper's kernel, followed)**: with ``recompute=True`` the sparse part is one
autograd function that keeps only ``x`` (shared with the base layer), the ``n`` values and
the support for backward; the dense ``S`` is scattered for the matmul and again in backward
(``grad values = (g^T x)[support]``), never stored between them. ``recompute=False`` lets
autograd keep the dense ``S`` (``d_out d_in`` floats per slot until backward).
Init: ``A`` Kaiming-uniform, ``B = 0`` (as LoRA), ``S = 0`` **(reading: the paper pre-trains
with ``S ~ U(-1/sqrt(d_in), 1/sqrt(d_in))``; as an adapter S starts at 0 so a fresh adapter
is the base model)**.
Trainable per slot: ``r (d_in + d_out) + n``. Mergeable: ``W = W0 + s B A + S``.
Defaults: r=8, alpha=8, density=0.01 (the paper code's ``sp_ratio``), seed=0,
recompute=True. SLTrain as a full-weight replacement (the dense ``W0`` dropped):
``lorakit.core.sltrain_full.replace_weights``.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .base import AdapterConfig, HostOps, Method, SlotInfo, kaiming_


@dataclass
class SLTrainConfig(AdapterConfig):
    density: float = 0.01
    seed: int = 0
    recompute: bool = True
    method = "sltrain"

    def validate(self) -> None:
        super().validate()
        if not 0.0 < self.density <= 1.0:
            raise ValueError(f"sltrain: density must be in (0, 1], got {self.density!r}")


def random_support(n_entries: int, n: int, seed: int, key: str) -> Tensor:
    """``n`` sorted distinct flat indices in ``[0, n_entries)``, from ``seed`` and ``key``."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(key.encode()))
    idx = torch.randperm(n_entries, generator=g)[:n].sort().values
    return idx.to(torch.int32 if n_entries < 2**31 else torch.int64)


def scatter_dense(values: Tensor, support: Tensor, d_out: int, d_in: int) -> Tensor:
    """The dense ``S (d_out x d_in)``: ``values`` at the flat indices ``support``, else 0."""
    flat = values.new_zeros(d_out * d_in)
    return flat.scatter(0, support.long(), values).view(d_out, d_in)


class _SparseApply(torch.autograd.Function):
    """``ops.down(x, S)`` keeping only ``x``, ``values``, ``support`` for backward."""

    @staticmethod
    def forward(ctx, x: Tensor, values: Tensor, support: Tensor, shape, ops: HostOps):
        ctx.save_for_backward(x, values, support)
        ctx.shape, ctx.ops = shape, ops
        return ops.down(x, scatter_dense(values, support, *shape))

    @staticmethod
    def backward(ctx, g: Tensor):
        x, values, support = ctx.saved_tensors
        need_x = ctx.needs_input_grad[0]
        with torch.enable_grad():
            xd = x.detach().requires_grad_(need_x)
            s = scatter_dense(values.detach(), support, *ctx.shape).requires_grad_()
            y = ctx.ops.down(xd, s.to(xd.dtype))  # backward runs outside autocast
            grads = torch.autograd.grad(y, [s, xd] if need_x else [s], g.to(y.dtype))
        g_values = grads[0].reshape(-1)[support.long()]
        return (grads[1] if need_x else None), g_values, None, None, None


class SLTrain(Method):
    name = "sltrain"
    test_hyper = {"density": 0.1}
    formula = "r*(d_in + d_out) + floor(density*d_out*d_in) per layer (support saved, int32)"

    def __init__(self, cfg: SLTrainConfig, slot: SlotInfo):
        super().__init__(cfg, slot)
        self.A = nn.Parameter(kaiming_(torch.empty(self.r, self.d_in)))
        self.B = nn.Parameter(torch.zeros(self.d_out, self.r))
        n_entries = self.d_out * self.d_in
        n = max(1, int(cfg.density * n_entries))
        self.register_buffer("support", random_support(n_entries, n, cfg.seed, slot.name))
        self.values = nn.Parameter(torch.zeros(n))
        self.recompute = cfg.recompute

    def sparse(self) -> Tensor:
        """The dense ``S`` (for merging, tests and inspection)."""
        return scatter_dense(self.values, self.support, self.d_out, self.d_in)

    def delta(self, x: Tensor) -> Tensor:
        x = self.drop(x)
        low = self.ops.mix(self.ops.down(x, self.A), self.B) * self.s
        if self.recompute and torch.is_grad_enabled():
            shape = (self.d_out, self.d_in)
            return low + _SparseApply.apply(x, self.values, self.support, shape, self.ops)
        return low + self.ops.down(x, self.sparse())

    @torch.no_grad()
    def test_perturb(self) -> None:
        self.values.sub_(1.0)  # the contract centres 1-D tensors (gains) at 1; S's entries at 0

    def delta_weight(self) -> Tensor:
        return self.s * (self.B @ self.A) + self.sparse()

    def extra_repr(self) -> str:
        return super().extra_repr() + f", nnz={self.values.numel()}"
