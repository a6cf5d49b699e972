"""Uni-LoRA: every LoRA entry of the model is one scaled entry of a single trainable vector.

All LoRA factors of one ``inject`` call, flattened in layer order (each slot's ``A (r x d_in)``
then ``B (d_out x r)``: ``D`` numbers), equal ``P theta``: ``theta (theta_d_length)`` is the
only trainable tensor, shared by every layer; ``P`` is a random isometric projection: entry
``i`` picks slot ``idx[i]`` of ``theta`` and is scaled by ``1/sqrt(count of idx[i])``. The
assignment is balanced (every slot used ``floor(D/d)`` or ``ceil(D/d)`` times) and shuffled
with ``proj_seed`` (numpy's ``default_rng``), exactly as Hugging Face PEFT 0.21.2's
``unilora``; a test checks equal outputs. ``delta(x) = B A dropout(x)`` (no alpha scaling).
Indices and scales are regenerated from ``proj_seed`` on load, not saved, unless
``save_indices=True``; they are assigned once every slot exists (at the first forward).
Trainable: ``theta_d_length`` for the whole model. Mergeable: ``dW = B A``.
A fresh adapter is NOT the base model: ``theta`` starts uniform in
``[-init_bound, init_bound]`` (as PEFT; zero would give zero gradients), so its delta is
tiny (order ``init_bound^2``) but non-zero.
Defaults (as PEFT): r=4, theta_d_length=256, proj_seed=42, init_bound=0.02.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from .base import AdapterConfig, Method, SlotInfo


@dataclass
class UniLoRAConfig(AdapterConfig):
    r: int = 4
    theta_d_length: int = 256
    proj_seed: int = 42
    init_bound: float = 0.02
    save_indices: bool = False
    method = "unilora"

    def validate(self) -> None:
        super().validate()
        if not isinstance(self.theta_d_length, int) or self.theta_d_length < 1:
            raise ValueError(
                f"unilora: theta_d_length must be a positive integer, got {self.theta_d_length!r}"
            )


def balanced_indices(total: int, length: int, seed: int) -> Tensor:
    """``total`` indices into ``[0, length)``, each used ``floor`` or ``ceil(total/length)``
    times, shuffled by numpy ``default_rng(seed)`` (the same draws as PEFT)."""
    rng = np.random.default_rng(seed)
    data = np.repeat(np.arange(length), total // length)
    if total % length:
        data = np.concatenate([data, rng.choice(length, size=total % length, replace=False)])
    rng.shuffle(data)
    return torch.as_tensor(data, dtype=torch.long)


class Theta(nn.Module):
    """The one trainable vector of an inject call."""

    def __init__(self, length: int, bound: float):
        super().__init__()
        self.theta = nn.Parameter(torch.empty(length).uniform_(-bound, bound))


class Plan:
    """The slots of one inject call, in order; assigns indices/scales once all exist.
    A plain object (not a module), so it is never saved or moved."""

    def __init__(self, cfg: UniLoRAConfig):
        self.cfg, self.members, self.done = cfg, [], False

    @torch.no_grad()
    def assign(self) -> None:
        cfg = self.cfg
        total = sum(m.idx_A.numel() + m.idx_B.numel() for m in self.members)
        idx = balanced_indices(total, cfg.theta_d_length, cfg.proj_seed)
        counts = torch.bincount(idx, minlength=cfg.theta_d_length).float()
        inv = torch.where(counts > 0, counts.rsqrt(), torch.zeros_like(counts))
        at = 0
        for m in self.members:
            for ib, sb in ((m.idx_A, m.scale_A), (m.idx_B, m.scale_B)):
                chunk = idx[at : at + ib.numel()].view(ib.shape)
                ib.copy_(chunk)
                sb.copy_(inv[chunk])
                at += ib.numel()
        self.done = True


class UniLoRA(Method):
    name = "unilora"
    test_hyper = {"theta_d_length": 32}
    not_from_file = None  # its one projection spans the whole model
    starts_at_base = False
    formula = "theta_d_length for the whole model (one shared vector)"

    def __init__(self, cfg: UniLoRAConfig, slot: SlotInfo):
        super().__init__(cfg, slot)
        self.s = 1.0
        shared = slot.context.get("unilora")
        if shared is None:
            shared = slot.context["unilora"] = (
                Theta(cfg.theta_d_length, cfg.init_bound),
                Plan(cfg),
            )
        self.shared, self.plan = shared
        self.plan.members.append(self)
        keep = cfg.save_indices
        r, d_out, d_in = self.r, self.d_out, self.d_in
        self.register_buffer("idx_A", torch.zeros(r, d_in, dtype=torch.long), persistent=keep)
        self.register_buffer("idx_B", torch.zeros(d_out, r, dtype=torch.long), persistent=keep)
        self.register_buffer("scale_A", torch.zeros(r, d_in), persistent=keep)
        self.register_buffer("scale_B", torch.zeros(d_out, r), persistent=keep)

    def factors(self) -> tuple[Tensor, Tensor]:
        if not self.plan.done:
            self.plan.assign()
        theta = self.shared.theta
        return theta[self.idx_A] * self.scale_A, theta[self.idx_B] * self.scale_B

    def delta(self, x: Tensor) -> Tensor:
        a, b = self.factors()
        return self.ops.mix(self.ops.down(self.drop(x), a), b)

    def delta_weight(self) -> Tensor:
        a, b = self.factors()
        return b @ a
