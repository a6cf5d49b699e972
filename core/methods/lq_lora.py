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
4.25). Not implemented: the Fisher-weighted (data-aware) decomposition, and block-size
choices in the ILP (the group size is ``quantize``'s).
Used through ``quantize(model, bits=..., adapter=make_config("lq_lora", ...))``; injected on
its own it starts as LoRA (``B = 0``).
Hyper-parameters: ``lq_iters`` (default 20; the authors' 100 with the same early stop),
``budget_bits`` (None: every layer at ``quantize``'s ``bits``), ``candidate_bits``
(default 2, 3, 4, 8). Trainable per slot: ``r * (d_in + d_out)``. Mergeable.
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
    method = "lq_lora"

    def validate(self) -> None:
        super().validate()
        if not isinstance(self.lq_iters, int) or self.lq_iters < 1:
            raise ValueError(f"lq_lora: lq_iters must be a positive integer, got {self.lq_iters!r}")
        bad = [b for b in self.candidate_bits if b not in (2, 3, 4, 8)]
        if bad or not self.candidate_bits:
            raise ValueError(f"lq_lora: candidate_bits must be among 2, 3, 4, 8; got {bad}")
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


@torch.no_grad()
def lq_decompose(w: Tensor, r: int, spec, iters: int = 20) -> Decomposition:
    """``W ~ Q + L1 L2`` by alternating SVD and quantization (see the module doc)."""
    q_hat = torch.zeros_like(w)
    best, errors = None, []
    for _ in range(iters):
        a, b = svd_factors(w - q_hat, r)
        q = spec.quantize(w - b @ a)
        q_hat = q.dequantize()
        errors.append(float(torch.linalg.norm(w - q_hat - b @ a)))
        if best is not None and errors[-1] > errors[-2]:
            break
        best = (q, a, b)
    return Decomposition(*best, errors)


class LQLoRA(LoRA):
    name = "lq_lora"
    formula = "r*(d_in + d_out) per layer; init W ~ Q + L1 L2 (quantize(..., adapter=))"

    @classmethod
    def absorb(cls, w: Tensor, spec, cfg: LQLoRAConfig):
        d = lq_decompose(w, cfg.r, spec, cfg.lq_iters)
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
    for rows in item.slots.values():
        total += lq_decompose(item.weight[rows], cfg.r, spec, cfg.lq_iters).error ** 2
        done[rows] = True
    rest = item.weight[~done]
    if rest.numel():
        total += float(torch.linalg.norm(rest - spec.fake(rest))) ** 2
    return total
