"""S2-LoRA (sparsely shared LoRA, Whisper child speech).

Target layers are grouped by shape ``(d_out, d_in)`` (and kernel, and optionally by the
first of ``group_patterns`` a layer's name matches). Each group has ONE shared pair
``A (r x d_in)``, ``B (d_out x r)``; each layer owns a rank-coefficient vector
``lambda_l`` (length r): ``delta_l(x) = s * B diag(lambda_l) A x``.
Sparsity: ``regularizer() = beta * sum |lambda_l|`` and, after each optimizer step, a
proximal soft-threshold as in SoRA, ``lambda <- sign(lambda) * max(|lambda| - lr * xi, 0)``
with ``xi = prox_threshold`` (0 disables) and ``lr`` the coefficients' learning rate at
that step (``prox_lr`` when no optimizer reports it). Scaling by the lr matters with Adam:
a step moves ``lambda`` by at most about ``lr``, so ``xi < 1`` keeps a coefficient whose
gradient keeps pushing it and prunes the ones nothing holds, while an absolute threshold
above ``lr`` zeroes every coefficient within ``1 / threshold`` steps. The coefficients get
their own learning rate ``lam_lr_scale * lr`` **(reading)**, without weight decay, so that
a short run can decide which ranks to keep (their scale trades with ``B``'s).
Trainable: ``r*(d_in + d_out)`` per group + ``r`` per layer. Mergeable per layer.
Defaults: r=8, alpha=8, beta=1e-3, prox_threshold=0.1, lam_lr_scale=1 (readings);
A Kaiming, B = 0, lambda = 1.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .base import AdapterConfig, Method, SlotInfo, kaiming_


@dataclass
class S2LoRAConfig(AdapterConfig):
    beta: float = 1e-3
    prox_threshold: float = 0.1
    prox_lr: float = 1e-3  # used only when no optimizer reports the coefficients' lr
    lam_lr_scale: float = 1.0
    group_patterns: tuple[str, ...] = ()
    method = "s2_lora"

    def validate(self) -> None:
        super().validate()
        if self.beta < 0 or self.prox_threshold < 0 or self.prox_lr < 0:
            raise ValueError("s2_lora: beta, prox_threshold and prox_lr must be >= 0")
        if self.lam_lr_scale <= 0:
            raise ValueError(f"s2_lora: lam_lr_scale must be > 0, got {self.lam_lr_scale}")


class SharedPair(nn.Module):
    """The one ``A``/``B`` pair of a shape group."""

    def __init__(self, r: int, d_out: int, d_in: int):
        super().__init__()
        self.A = nn.Parameter(kaiming_(torch.empty(r, d_in)))
        self.B = nn.Parameter(torch.zeros(d_out, r))


def group_key(cfg: S2LoRAConfig, slot: SlotInfo) -> str:
    module_name = slot.name.split(":")[0]
    tag = next((p for p in cfg.group_patterns if re.search(p, module_name)), "")
    kh, kw = slot.ops.kernel
    return (
        f"{slot.d_out}x{slot.d_in}"
        + (f"k{kh}x{kw}" if (kh, kw) != (1, 1) else "")
        + (f"@{tag}" if tag else "")
    )


class S2LoRA(Method):
    name = "s2_lora"
    formula = "r*(d_in + d_out) per shape group + r per layer"
    step_lr_tensor = "lam"  # ``step_lr`` is the lr of the coefficients' group

    def __init__(self, cfg: S2LoRAConfig, slot: SlotInfo):
        super().__init__(cfg, slot)
        groups = slot.context.setdefault("s2_lora_groups", {})
        key = group_key(cfg, slot)
        if key not in groups:
            groups[key] = SharedPair(self.r, self.d_out, self.d_in)
        self.group = key
        self.shared = groups[key]  # registered in every layer; parameters() de-duplicates
        self.lam = nn.Parameter(torch.ones(self.r))
        self.beta, self.prox, self.prox_lr = cfg.beta, cfg.prox_threshold, cfg.prox_lr
        self.param_options = {"lam": {"lr_scale": cfg.lam_lr_scale, "weight_decay": 0.0}}
        self.step_lr: float | None = None

    def delta(self, x: Tensor) -> Tensor:
        z = self.ops.down(self.drop(x), self.shared.A)
        return self.ops.mix(self.ops.scale_channels(z, self.lam), self.shared.B) * self.s

    def delta_weight(self) -> Tensor:
        return self.s * (self.shared.B * self.lam) @ self.shared.A

    def regularizer(self) -> Tensor:
        return self.beta * self.lam.abs().sum()

    def threshold(self) -> float:
        """``lr * xi`` of the coming proximal step."""
        return (self.prox_lr if self.step_lr is None else self.step_lr) * self.prox

    @torch.no_grad()
    def after_step(self) -> None:
        if self.prox > 0:
            thr = self.threshold()
            self.lam.copy_(torch.sign(self.lam) * (self.lam.abs() - thr).clamp_min(0))

    def active_rank(self) -> int:
        """Ranks whose coefficient the proximal step has not zeroed."""
        return int((self.lam != 0).sum())

    def extra_repr(self) -> str:
        return super().extra_repr() + f", group={self.group}"
