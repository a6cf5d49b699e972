"""DiffoRA: a differentiable search over candidate modules, then only the chosen keep LoRA.

Every candidate slot has a LoRA (``A (r x d_in)``, ``B (d_out x r)``) and one architecture
logit ``beta``; the Differential Adaptation Matrix is relaxed **(reading)** to the gate
``sigmoid(beta)``: ``delta(x) = sigmoid(beta) * s * B A x`` during the search. Adapters and
logits train together for ``search_steps`` optimizer steps (weights shared between the
relaxed and the final model: the search trains the adapters the kept modules keep).
Then the matrix is discretised over all slots of the adapter: the ``keep`` fraction with
the highest ``beta`` keep their adapter with the gate folded into ``B`` (so the output is
continuous at the switch); the others are removed (rank 0: they add exactly 0).
The logits get no weight decay. Trainable: ``r*(d_in + d_out) + 1`` per candidate slot
during the search, ``r*(d_in + d_out)`` per kept slot after. Mergeable: ``dW = g s B A``.
Defaults: r=8, alpha=8, search_steps=50, keep=0.5, beta init 0 (gate 0.5).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .base import AdapterConfig, SlotInfo
from .ranked import RankedLoRA


@dataclass
class DiffoRAConfig(AdapterConfig):
    search_steps: int = 50
    keep: float = 0.5
    method = "diffora"

    def validate(self) -> None:
        super().validate()
        if self.search_steps < 0:
            raise ValueError(f"diffora: search_steps must be >= 0, got {self.search_steps!r}")
        if not 0.0 < self.keep <= 1.0:
            raise ValueError(f"diffora: keep must be in (0, 1], got {self.keep!r}")


class DiffoRA(RankedLoRA):
    name = "diffora"
    test_hyper = {"search_steps": 1}
    formula = "r*(d_in + d_out) + 1 per layer while searching; r*(d_in + d_out) per kept layer after"
    param_options = {"beta": {"weight_decay": 0.0}}

    def __init__(self, cfg: DiffoRAConfig, slot: SlotInfo):
        super().__init__(cfg, slot)
        self.cfg_d = cfg
        self.beta = nn.Parameter(torch.zeros(()))
        self.register_buffer("searching", torch.ones((), dtype=torch.bool))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def factors(self) -> tuple[Tensor, Tensor]:
        a, b = super().factors()
        if bool(self.searching) and self.r > 0:
            b = b * torch.sigmoid(self.beta)
        return a, b

    @torch.no_grad()
    def after_step(self) -> None:
        self.steps += 1

    @torch.no_grad()
    def settle(self, kept: bool) -> None:
        """End the search for this slot: fold the gate in, or remove the adapter."""
        if kept:
            self.B.mul_(torch.sigmoid(self.beta))
        else:
            self.resize_rank(torch.arange(0))
        self.searching.fill_(False)

    @staticmethod
    @torch.no_grad()
    def model_after_step(model: nn.Module) -> None:
        groups: dict[int, list[DiffoRA]] = {}
        for m in model.modules():
            if isinstance(m, DiffoRA):
                groups.setdefault(id(m.cfg_d), []).append(m)
        for slots in groups.values():
            if bool(slots[0].searching) and int(slots[0].steps) >= slots[0].cfg_d.search_steps:
                discretise(slots)


def discretise(slots: list[DiffoRA]) -> list[DiffoRA]:
    """Keep the top ``keep`` fraction of slots by ``beta`` (at least one); returns them."""
    n = max(1, math.ceil(slots[0].cfg_d.keep * len(slots)))
    order = sorted(range(len(slots)), key=lambda i: float(slots[i].beta), reverse=True)
    chosen = set(order[:n])
    for i, m in enumerate(slots):
        m.settle(i in chosen)
    return [slots[i] for i in sorted(chosen)]
