"""Bayesian-LoRA (Meo et al. 2024): LoRA whose rank and the bit widths of its factors are
chosen by differentiable gates with priors, reporting the bit operations it learned.

``delta(x) = s * Q_B(B) diag(z) Q_A(A) dropout(x)``. Rank gates ``z_1..z_r`` switch rank
components; ``Q_M`` quantizes factor ``M`` with nested residual gates (Bayesian Bits,
van Baalen et al. 2020, as in a public PEFT fork's ``tuners/blora`` layer, whose
Bayesian Bits quantizers sit on ``lora_A``, ``lora_B`` and ``lora_E``):
``Q(M) = x_2 + g_4 (e_4 + g_8 (e_8 + g_16 (e_16 + g_32 e_32)))`` with ``x_2`` the 2-bit
value of ``M``, ``e_b`` the ``b``-bit residual ``step_b * round((M - x_{<b}) / step_b)``,
``step_b = a / (2**(b-1) - 1)`` (symmetric grid, ``a = max |M|``, straight-through rounding),
and ``e_32 = M - x_{<32}`` (exact: every gate open is the float factor). A matrix's learned
bit width is the widest level whose gates are all open.
Gates are hard-concrete (Louizos et al. 2018; ``beta = 2/3``, stretch ``(-0.1, 1.1)``):
sampled in training, at evaluation ``z = 1`` iff ``P(z != 0) > threshold``. Prior (the
regularizer, **reading**: one price for rank and bits): ``bop_penalty`` times the expected
bit operations of the adapter per token divided by those of the dense float layer,
``E[BOPs] = sum_i P(z_i) (d_in E[b_A] + d_out E[b_B]) act_bits``,
``E[b] = 2 + sum_l P(g_4 ... g_l open) (b_l - b_{l-1})``.
lorakit's reading (the paper's priors are over the same gates): activations are not
quantized (``act_bits=32`` enters the count only); the authors' SVD variant's singular
values are folded into the rank gates; the base layer's weight is not gated (it is float,
or a ``quantize``'d base whose bits ``bit_operations`` reads).
``bit_operations(model)`` reports per slot the learned rank, bits of A and B and the bit
operations per token of adapter (``k d_in b_A act + d_out k b_B act``) and base
(``d_out d_in b_W act``). Trainable per slot: ``r (d_in + d_out) + r + 2 (levels - 1)``.
Mergeable (``dW = s Q_B(B) diag(z) Q_A(A)`` at the evaluation gates). Defaults: r=8,
alpha=8, levels (2, 4, 8, 16, 32), bop_penalty 1e-2, gate_init 3 (gates open: full rank,
32 bits), threshold 0.5, act_bits 32; A Kaiming, B = 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .base import AdapterConfig, Method, SlotInfo, kaiming_

BETA, GAMMA, ZETA = 2.0 / 3.0, -0.1, 1.1
FLOAT_BITS = 32


@dataclass
class BayesianLoRAConfig(AdapterConfig):
    levels: tuple[int, ...] = (2, 4, 8, 16, 32)
    bop_penalty: float = 1e-2
    gate_init: float = 3.0
    threshold: float = 0.5
    act_bits: int = 32
    method = "bayesian_lora"

    def validate(self) -> None:
        super().validate()
        lv = list(self.levels)
        if len(lv) < 2 or lv[0] < 2 or lv != sorted(set(lv)) or lv[-1] != FLOAT_BITS:
            raise ValueError(
                f"bayesian_lora: levels must rise from >= 2 to {FLOAT_BITS}, got {self.levels!r}"
            )
        if not 0 < self.threshold < 1:
            raise ValueError(f"bayesian_lora: threshold must be in (0, 1), got {self.threshold}")


def p_open(log_alpha: Tensor) -> Tensor:
    """``P(z != 0)`` of a hard-concrete gate."""
    return torch.sigmoid(log_alpha - BETA * math.log(-GAMMA / ZETA))


def sample_gate(log_alpha: Tensor) -> Tensor:
    u = torch.rand_like(log_alpha).clamp(1e-6, 1 - 1e-6)
    s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + log_alpha) / BETA)
    return (s * (ZETA - GAMMA) + GAMMA).clamp(0.0, 1.0)


def round_ste(v: Tensor) -> Tensor:
    return v + (torch.round(v) - v).detach()


def gated_quantize(m: Tensor, gates: Tensor, levels: tuple[int, ...]) -> Tensor:
    """Nested residual quantization of ``m`` (module doc); ``gates`` for ``levels[1:]``."""
    a = m.detach().abs().amax().clamp_min(1e-12)
    step = a / (2 ** (levels[0] - 1) - 1)
    acc = step * round_ste(m.clamp(-a, a) / step)
    out, chain = acc, 1.0
    for g, b in zip(gates, levels[1:], strict=True):
        chain = chain * g
        if b >= FLOAT_BITS:
            eps = m - acc
        else:
            step = a / (2 ** (b - 1) - 1)
            eps = step * round_ste((m - acc) / step)
        acc = acc + eps
        out = out + chain * eps
    return out


class BayesianLoRA(Method):
    name = "bayesian_lora"
    formula = "r*(d_in + d_out) + r + 2*(len(levels) - 1) per layer"

    def __init__(self, cfg: BayesianLoRAConfig, slot: SlotInfo):
        super().__init__(cfg, slot)
        self.levels, self.act_bits = tuple(cfg.levels), cfg.act_bits
        self.penalty, self.threshold = cfg.bop_penalty, cfg.threshold
        n = len(self.levels) - 1
        self.A = nn.Parameter(kaiming_(torch.empty(self.r, self.d_in)))
        self.B = nn.Parameter(torch.zeros(self.d_out, self.r))
        self.rank_logit = nn.Parameter(torch.full((self.r,), float(cfg.gate_init)))
        self.bit_logit_A = nn.Parameter(torch.full((n,), float(cfg.gate_init)))
        self.bit_logit_B = nn.Parameter(torch.full((n,), float(cfg.gate_init)))

    def gate(self, log_alpha: Tensor) -> Tensor:
        if self.training and torch.is_grad_enabled():
            return sample_gate(log_alpha)
        return (p_open(log_alpha) > self.threshold).to(log_alpha.dtype)

    def factors(self) -> tuple[Tensor, Tensor, Tensor]:
        qa = gated_quantize(self.A, self.gate(self.bit_logit_A), self.levels)
        qb = gated_quantize(self.B, self.gate(self.bit_logit_B), self.levels)
        return qa, qb, self.gate(self.rank_logit)

    def delta(self, x: Tensor) -> Tensor:
        qa, qb, z = self.factors()
        h = self.ops.scale_channels(self.ops.down(self.drop(x), qa), z)
        return self.ops.mix(h, qb) * self.s

    def delta_weight(self) -> Tensor:
        qa, qb, z = self.factors()
        return self.s * (qb * z) @ qa

    def expected_bits(self, log_alpha: Tensor) -> Tensor:
        p = torch.cumprod(p_open(log_alpha), 0)
        widths = torch.tensor(self.levels, dtype=p.dtype, device=p.device)
        return widths[0] + (p * (widths[1:] - widths[:-1])).sum()

    def regularizer(self) -> Tensor:
        e_bops = p_open(self.rank_logit).sum() * (
            self.d_in * self.expected_bits(self.bit_logit_A)
            + self.d_out * self.expected_bits(self.bit_logit_B)
        ) * self.act_bits
        dense = self.d_out * self.d_in * FLOAT_BITS * self.act_bits
        return self.penalty * e_bops / dense

    def learned(self) -> dict:
        """Evaluation-time rank and bit widths: ``{"rank", "bits_A", "bits_B"}``."""
        def width(log_alpha):
            open_ = torch.cumprod((p_open(log_alpha) > self.threshold).long(), 0)
            return self.levels[int(open_.sum())]

        rank = int((p_open(self.rank_logit) > self.threshold).sum())
        return {"rank": rank, "bits_A": width(self.bit_logit_A), "bits_B": width(self.bit_logit_B)}


def bit_operations(model: nn.Module, act_bits: int | None = None) -> dict:
    """Per Bayesian-LoRA slot: learned rank / bits and bit operations per token of the
    adapter and of its base slot; ``total_adapter`` and ``total_base`` summed."""
    from ..adapters import named_hosts

    layers, tot_a, tot_b = {}, 0, 0
    for _, host in named_hosts(model):
        base_bits = getattr(host.base, "bits", FLOAT_BITS)
        for adapter in host.adapters.values():
            for m in adapter.values():
                if not isinstance(m, BayesianLoRA):
                    continue
                act = m.act_bits if act_bits is None else act_bits
                got = m.learned()
                k = got["rank"]
                a_ops = (k * m.d_in * got["bits_A"] + m.d_out * k * got["bits_B"]) * act
                b_ops = m.d_out * m.d_in * base_bits * act
                layers[m.slot_name] = {**got, "adapter_bops": a_ops, "base_bops": b_ops}
                tot_a, tot_b = tot_a + a_ops, tot_b + b_ops
    return {"layers": layers, "total_adapter": tot_a, "total_base": tot_b}
