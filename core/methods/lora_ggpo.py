"""LoRA-GGPO: gradient- and weight-norm-guided perturbation of LoRA's factors in training.

The layer is LoRA's (``delta = s B A x``). While training (train mode, gradients on), the
forward pass uses perturbed factors ``A + E_A``, ``B + E_B``; the gradient is taken there
(so the step favours flat minima), the step is applied to the clean ``A``, ``B``, and the
perturbation is dropped right after each optimizer step (never saved: it is no tensor of
the module's state). The authors' code (github.com/llm172/LoRA-GGPO) could not be fetched
here, so the perturbation follows the paper's description **(reading)**: for each factor
``P`` and row ``i``, ``E_i ~ N(0, sigma_i^2 I)`` with
``sigma_i = (rho_g * ||grad_i|| + rho_w * ||P_i||) / sqrt(n_cols)``, ``grad_i`` the row's
gradient at the previous optimizer step (kept as a buffer, so a resumed run draws the
same perturbation), ``P_i`` the current row. One perturbation serves every micro-batch of
an optimizer step. Eval mode and ``torch.no_grad()`` use the clean factors.
Trainable: ``r*(d_in + d_out)`` per layer. Mergeable: ``dW = s B A`` (clean factors).
Defaults: r=8, alpha=8, rho_g=0.05, rho_w=0.05.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .base import AdapterConfig, SlotInfo
from .lora import LoRA


@dataclass
class LoRAGGPOConfig(AdapterConfig):
    rho_g: float = 0.05
    rho_w: float = 0.05
    method = "lora_ggpo"

    def validate(self) -> None:
        super().validate()
        if self.rho_g < 0 or self.rho_w < 0:
            raise ValueError("lora_ggpo: rho_g and rho_w must be >= 0")


class LoRAGGPO(LoRA):
    name = "lora_ggpo"
    formula = "r*(d_in + d_out) per layer"

    def __init__(self, cfg: LoRAGGPOConfig, slot: SlotInfo):
        super().__init__(cfg, slot)
        self.rho_g, self.rho_w = cfg.rho_g, cfg.rho_w
        self.register_buffer("gnorm_A", torch.zeros(self.r))
        self.register_buffer("gnorm_B", torch.zeros(self.d_out))
        self.noise: tuple[Tensor, Tensor] | None = None  # (E_A, E_B) of the current step

    def sigmas(self) -> tuple[Tensor, Tensor]:
        """Per-row standard deviations of ``E_A`` (r) and ``E_B`` (d_out)."""
        a, b = self.A.detach().float(), self.B.detach().float()
        sa = (self.rho_g * self.gnorm_A + self.rho_w * a.norm(dim=1)) / math.sqrt(self.d_in)
        sb = (self.rho_g * self.gnorm_B + self.rho_w * b.norm(dim=1)) / math.sqrt(self.r)
        return sa, sb

    def perturbation(self) -> tuple[Tensor, Tensor]:
        if self.noise is None:
            sa, sb = self.sigmas()
            ea = torch.randn(self.A.shape, device=self.A.device) * sa[:, None]
            eb = torch.randn(self.B.shape, device=self.B.device) * sb[:, None]
            self.noise = (ea.to(self.A.dtype), eb.to(self.B.dtype))
        return self.noise

    def delta(self, x: Tensor) -> Tensor:
        a, b = self.A, self.B
        if self.training and torch.is_grad_enabled() and a.requires_grad:
            ea, eb = self.perturbation()
            a, b = a + ea, b + eb
        return self.ops.mix(self.ops.down(self.drop(x), a), b) * self.s

    @torch.no_grad()
    def before_step(self) -> None:
        """Remember this step's row gradient norms for the next perturbation."""
        for p, buf in ((self.A, self.gnorm_A), (self.B, self.gnorm_B)):
            if p.grad is not None:
                n = p.grad.detach().float().norm(dim=1)
                if bool(torch.isfinite(n).all()):
                    buf.copy_(n)

    def after_step(self) -> None:
        self.noise = None  # the step is taken: the perturbation is gone
