"""LQ-LoRA (Guo et al. 2023): each weight split as ``W ~ Q + L1 L2``, a quantized part that
stays frozen and a float low-rank part that trains; bit widths per matrix by an ILP.

Decomposition (the authors' ``lowrank_quantized_sparse_decomposition``, read from their
code): ``Q_0 = 0``; for ``t = 1..lq_iters``: ``L1 L2 = SVD_r(W - Q_{t-1})``,
``Q_t = quant(W - L1 L2)``, ``e_t = ||W - Q_t - L1 L2||_F``; stop as soon as ``e_t`` grows
and keep the previous (best) pair (the authors return the worse last pair; their code
marks it as unfinished). The adapter is LoRA's with ``B = L1 / sqrt(s)``, ``A = L2 / sqrt(s)``
(``delta = s B A dropout(x)``), so ``Q + s B A`` starts at the decomposition.
Bit allocation (``budget_bits`` set): every quantized layer ``n`` and candidate width
``c`` in ``candidate_bits`` gets the decomposition's squared error ``e[n, c]`` and the
stored bytes ``b[n, c]`` (codes + float16 scales); ``scipy.optimize.milp`` picks one width
per layer minimising ``sum e`` under ``sum b <= budget_bits / 8 * (weights)``
(``core/quant/ilp.py``). ``budget_bits`` counts scale bits too (4-bit NF at group 64 costs
4.25). Not implemented: block-size choices in the ILP (the group size is ``quantize``'s).

Fisher weighting (``fisher: true``, the paper's data-aware decomposition): the objective
becomes ``||sqrt(F) .* (W - Q - L1 L2)||_F`` with ``F`` a diagonal Fisher estimate of the
weight (``fisher_diagonal``: the mean squared gradient of a loss over a few batches; batches
of one example give the per-example empirical Fisher of the paper). Weighted low-rank
approximation has no closed form; like the authors' code (``weighted_svd_decomposition``,
heuristic ``two-sided``, ``reduce_before_sqrt``) ``F`` is replaced by the rank-one
``d_row d_col^T`` with ``d_row = sqrt(mean_j F_ij)``, ``d_col = sqrt(mean_i F_ij)``, for
which ``L1 L2 = diag(d_row)^-1 SVD_r(diag(d_row) (W - Q) diag(d_col)) diag(d_col)^-1`` is
exact; ``Q`` is still plain NF/int quantization of ``W - L1 L2``; the early stop and the
ILP's errors use the weighted error. ``F`` reaches the method through
``quantize(model, ..., adapter=cfg, fisher=fisher_diagonal(model, batches, loss_fn))``.
Used through ``quantize(model, bits=..., adapter=make_config("lq_lora", ...))``; injected on
its own it starts as LoRA (``B = 0``).
Hyper-parameters: ``lq_iters`` (default 20; the authors' 100 with the same early stop),
``budget_bits`` (None: every layer at ``quantize``'s ``bits``), ``candidate_bits``
(default 2, 3, 4, 8), ``fisher`` (default false: the unweighted decomposition; true needs
``quantize(..., fisher=)``), ``fisher_floor`` (default 1e-8 relative to the mean: the
smallest row / column weight, so that dividing by ``d_row``, ``d_col`` stays finite),
``fisher_batches`` (default 8: in a pipeline run (clip, ood, cod, asr with
``backbone.quantize``), ``fisher: true`` estimates ``F`` from the first ``fisher_batches``
global batches of the run's own training stream, on the float model, before the
decomposition; metrics.json records ``quantized.fisher_batches``). Trainable per slot: ``r * (d_in + d_out)``. Mergeable.
Defaults: r=8, alpha=8 (s=1), dropout 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from .loftq import svd_factors
from .lora import LoRA, LoRAConfig


@dataclass
class LQLoRAConfig(LoRAConfig):
    lq_iters: int = 20
    budget_bits: float | None = None
    candidate_bits: tuple[int, ...] = (2, 3, 4, 8)
    fisher: bool = False  # Fisher-weighted decomposition (quantize(..., fisher=...))
    fisher_floor: float = 1e-8
    fisher_batches: int = 8  # a pipeline's own training batches the Fisher is estimated from
    method = "lq_lora"

    def validate(self) -> None:
        super().validate()
        if not isinstance(self.lq_iters, int) or self.lq_iters < 1:
            raise ValueError(f"lq_lora: lq_iters must be a positive integer, got {self.lq_iters!r}")
        bad = [b for b in self.candidate_bits if b not in (2, 3, 4, 8)]
        if bad or not self.candidate_bits:
            raise ValueError(f"lq_lora: candidate_bits must be among 2, 3, 4, 8; got {bad}")
        if not isinstance(self.fisher, bool):
            raise ValueError(f"lq_lora: fisher must be true or false, got {self.fisher!r}")
        if not isinstance(self.fisher_batches, int) or self.fisher_batches < 1:
            raise ValueError(
                f"lq_lora: fisher_batches must be a positive integer, got {self.fisher_batches!r}"
            )
        if not self.fisher_floor > 0:
            raise ValueError(f"lq_lora: fisher_floor must be > 0, got {self.fisher_floor!r}")
        if self.budget_bits is not None and not self.budget_bits > 0:
            raise ValueError(f"lq_lora: budget_bits must be > 0, got {self.budget_bits!r}")


@dataclass
class Decomposition:
    q: object  # QTensor
    a: Tensor  # L2 (r x d_in)
    b: Tensor  # L1 (d_out x r)
    errors: list[float]  # e_t of every iteration run (the last one may have grown)

    @property
    def error(self) -> float:
        return min(self.errors)


def fisher_scales(fisher: Tensor, floor: float = 1e-8) -> tuple[Tensor, Tensor]:
    """``(d_row (d_out, 1), d_col (1, d_in))``: the two-sided rank-one weights standing in
    for ``sqrt(F)`` (see the module doc), floored at ``floor`` times their mean."""
    f = fisher.double().clamp_min(0)
    rows, cols = f.mean(1, keepdim=True).sqrt(), f.mean(0, keepdim=True).sqrt()
    rows = rows.clamp_min(floor * float(rows.mean()) + 1e-30)
    cols = cols.clamp_min(floor * float(cols.mean()) + 1e-30)
    return rows, cols


def weighted_error(w: Tensor, approx: Tensor, fisher: Tensor | None) -> float:
    """``||sqrt(F) .* (W - approx)||_F`` (plain Frobenius when ``fisher`` is None)."""
    diff = (w - approx).double()
    return float(torch.linalg.norm(diff if fisher is None else fisher.double().sqrt() * diff))


@torch.no_grad()
def lq_decompose(w: Tensor, r: int, spec, iters: int = 20, fisher: Tensor | None = None,
                 floor: float = 1e-8) -> Decomposition:
    """``W ~ Q + L1 L2`` by alternating SVD and quantization (see the module doc);
    ``fisher`` (``w``'s shape): the Fisher-weighted variant, its errors weighted."""
    q_hat = torch.zeros_like(w)
    best, errors = None, []
    rows, cols = fisher_scales(fisher, floor) if fisher is not None else (None, None)
    for _ in range(iters):
        if fisher is None:
            a, b = svd_factors(w - q_hat, r)
        else:
            a, b = svd_factors((rows * (w - q_hat) * cols).float(), r)
            a, b = (a / cols).float(), (b / rows).float()
        q = spec.quantize(w - b @ a)
        q_hat = q.dequantize()
        errors.append(weighted_error(w, q_hat + b @ a, fisher))
        if best is not None and errors[-1] > errors[-2]:
            break
        best = (q, a, b)
    return Decomposition(*best, errors)


class LQLoRA(LoRA):
    name = "lq_lora"
    formula = "r*(d_in + d_out) per layer; init W ~ Q + L1 L2 (quantize(..., adapter=))"

    @classmethod
    def absorb(cls, w: Tensor, spec, cfg: LQLoRAConfig, fisher: Tensor | None = None):
        d = lq_decompose(w, cfg.r, spec, cfg.lq_iters, fisher, cfg.fisher_floor)
        root = math.sqrt(cfg.scale())
        return d.q, {"A": d.a / root, "B": d.b / root}

    @classmethod
    def plan_bits(cls, layers, spec, cfg: LQLoRAConfig):
        """``({layer: bits}, notes)`` from the ILP when ``budget_bits`` is set."""
        if cfg.budget_bits is None:
            return {}, []
        from ..quant.ilp import allocate

        cands = sorted(set(cfg.candidate_bits))
        errors = torch.zeros(len(layers), len(cands), dtype=torch.float64)
        costs = torch.zeros_like(errors)
        for i, item in enumerate(layers):
            for j, bits in enumerate(cands):
                s = replace(spec, bits=bits)
                errors[i, j] = layer_error(item, s, cfg)
                costs[i, j] = s.nbytes(*item.weight.shape)
        n_weights = sum(item.weight.numel() for item in layers)
        budget = cfg.budget_bits / 8 * n_weights
        plan = allocate(errors.numpy(), costs.numpy(), budget)
        bits = {item.name: cands[c] for item, c in zip(layers, plan.choice, strict=True)}
        used = 8 * plan.cost / n_weights
        return bits, [f"lq_lora ILP: {used:.3f} of {cfg.budget_bits} bits per weight used; "
                      f"bits {sorted(bits.values())}"]


def layer_error(item, spec, cfg: LQLoRAConfig) -> float:
    """Squared error of one layer at ``spec``: decomposed slots + plainly quantized rows."""
    done = torch.zeros(item.weight.shape[0], dtype=torch.bool)
    total = 0.0
    f = item.fisher
    for rows in item.slots.values():
        total += lq_decompose(item.weight[rows], cfg.r, spec, cfg.lq_iters,
                              None if f is None else f[rows], cfg.fisher_floor).error ** 2
        done[rows] = True
    rest = item.weight[~done]
    if rest.numel():
        total += weighted_error(rest, spec.fake(rest), None if f is None else f[~done]) ** 2
    return total
