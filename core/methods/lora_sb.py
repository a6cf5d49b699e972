"""LoRA-SB ("LoRA Silver Bullet"): frozen ``B``, ``A`` and a trainable ``r x r`` matrix ``R``.

``delta(x) = s * B R A dropout(x)`` with ``B (d_out x r)``, ``A (r x d_in)`` frozen buffers
(saved with the adapter) and ``R (r x r)`` trainable.
Initialisation from gradients (the training protocol's ``prepare`` step, which pipelines run
before building the optimizer): the slot's full-weight gradient ``G`` is averaged over a few
batches; the first full fine-tuning update is approximated as in the authors' code,
``dW_1 = -init_lr * sign(G)`` (Adam's first step; ``grad_transform="raw"`` uses
``-init_lr * G``), and from its truncated SVD ``U_r S_r V_r^T``:
``B = U_r``, ``A = V_r^T``, ``R = S_r / s``. So after ``prepare`` the model already holds
the best rank-``r`` approximation of full fine-tuning's first update, and later gradient
steps on ``R`` (``B^T G A^T``, with orthonormal ``B``, ``A``) stay in that subspace.
Before ``prepare`` (or without it): ``B``, ``A`` are random orthonormal, ``R = 0`` (the
LoRA-XS-style random start; a fresh adapter is the base model).
Trainable: ``r^2`` per layer. Mergeable: ``dW = s B R A``.
Defaults: r=16, alpha=16 (s=1), init_lr=1e-3, grad_transform="sign".
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .base import AdapterConfig, Method, SlotInfo, thin_svd

TRANSFORMS = ("sign", "raw")


@dataclass
class LoRASBConfig(AdapterConfig):
    r: int = 16
    alpha: float = 16.0
    init_lr: float = 1e-3
    grad_transform: str = "sign"
    method = "lora_sb"

    def validate(self) -> None:
        super().validate()
        if self.grad_transform not in TRANSFORMS:
            raise ValueError(
                f"lora_sb: grad_transform must be one of {TRANSFORMS}, got {self.grad_transform!r}"
            )
        if not self.init_lr > 0:
            raise ValueError(f"lora_sb: init_lr must be > 0, got {self.init_lr!r}")


def _orthonormal(rows: int, cols: int) -> Tensor:
    q, _ = torch.linalg.qr(torch.randn(max(rows, cols), min(rows, cols)))
    return q if rows >= cols else q.T


class LoRASB(Method):
    name = "lora_sb"
    formula = "r^2 per layer (B, A frozen buffers from the first gradient)"
    needs_prepare = True

    def __init__(self, cfg: LoRASBConfig, slot: SlotInfo):
        super().__init__(cfg, slot)
        self.register_buffer("B", _orthonormal(self.d_out, self.r).contiguous())
        self.register_buffer("A", _orthonormal(self.r, self.d_in).contiguous())
        self.R = nn.Parameter(torch.zeros(self.r, self.r))
        self.init_lr, self.transform = cfg.init_lr, cfg.grad_transform
        self.probe: nn.Parameter | None = None  # a zero dense dW whose gradient is G

    def delta(self, x: Tensor) -> Tensor:
        ops, x = self.ops, self.drop(x)
        y = ops.mix(ops.mix(ops.down(x, self.A), self.R), self.B) * self.s
        if self.probe is not None:
            y = y + ops.down(x, self.probe)
        return y

    def delta_weight(self) -> Tensor:
        return self.s * (self.B @ self.R @ self.A)

    # --- the training protocol's prepare step (see lorakit.core.protocol) -----------------

    def begin_prepare(self) -> None:
        """Attach a zero dense update; its gradient equals the slot weight's gradient."""
        self.probe = nn.Parameter(self.R.new_zeros(self.d_out, self.d_in))

    def prepare_grads(self) -> list[Tensor]:
        """The gradients a distributed run averages before ``end_prepare``."""
        return [self.probe.grad] if self.probe is not None and self.probe.grad is not None else []

    def abort_prepare(self) -> None:
        self.probe = None

    @torch.no_grad()
    def end_prepare(self, n_batches: int) -> None:
        probe, self.probe = self.probe, None
        if probe is None or probe.grad is None:
            raise ValueError(
                f"lora_sb: layer {self.slot_name} got no gradient in prepare; "
                "the loss does not depend on it"
            )
        g = probe.grad.double() / n_batches
        if not torch.isfinite(g).all():
            raise ValueError(f"lora_sb: non-finite gradient for layer {self.slot_name} in prepare")
        first = -self.init_lr * (torch.sign(g) if self.transform == "sign" else g)
        u, s, vh = thin_svd(first)  # its sign convention: B, A, R machine-independent
        r = self.r
        self.B.copy_(u[:, :r])
        self.A.copy_(vh[:r])
        self.R.copy_(torch.diag(s[:r]) / self.s)
