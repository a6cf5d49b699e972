"""FoRA: frequency-aware LoRA for layers that see a spatial token grid (SAM's encoder).

``z = A x`` (r channels per token on an ``H x W`` grid); frequency branch
``z_f = irfft2(M (.) rfft2(z))`` where the learnable radial mask ``M`` has one value per
rank channel and radial band: frequency ``(f_y, f_x)`` (cycles/sample) has normalised
radius ``rho = sqrt(f_y^2 + f_x^2) / sqrt(1/2)`` and band ``min(floor(rho * n_bands),
n_bands - 1)``. ``delta(x) = s * B (z + z_f)``; ``M`` starts at 0, so FoRA starts as LoRA.

Input layouts: ``(N, H, W, C)`` (SAM blocks), ``(N, L, C)`` with ``grid=(H, W)`` in the
config, or a Conv2d feature map. Token sequences may start with ``prefix_tokens`` tokens
that are not on the grid (ViT / CLIP's class token); they get the plain LoRA path
(``z_f = 0``). Default (None): 1 when ``L = 1 + H*W``, else 0. Hosts: Linear, fused qkv,
attention (q/k/v/o slices of batch-first tokens) and Conv2d. Trainable per slot: ``r * (d_in + d_out) + r * n_bands``.
Not mergeable (the frequency branch mixes tokens). Defaults: n_bands=8, r=8, alpha=8.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .base import AdapterConfig, Method, SlotInfo, kaiming_


@dataclass
class FoRAConfig(AdapterConfig):
    n_bands: int = 8
    grid: tuple[int, int] | None = None
    prefix_tokens: int | None = None
    method = "fora"

    def validate(self) -> None:
        super().validate()
        if not isinstance(self.n_bands, int) or self.n_bands < 1:
            raise ValueError(f"fora: n_bands must be a positive integer, got {self.n_bands!r}")
        if self.grid is not None and (len(self.grid) != 2 or min(self.grid) < 1):
            raise ValueError(f"fora: grid must be (H, W) with positive sizes, got {self.grid!r}")
        if self.prefix_tokens is not None and (
            not isinstance(self.prefix_tokens, int) or self.prefix_tokens < 0
        ):
            raise ValueError(
                f"fora: prefix_tokens must be a non-negative integer, got {self.prefix_tokens!r}"
            )


def band_index(h: int, w: int, n_bands: int, device=None) -> Tensor:
    """Band of every rfft2 frequency of an ``h x w`` grid, shape ``(h, w // 2 + 1)``."""
    fy = torch.fft.fftfreq(h, device=device)[:, None]
    fx = torch.fft.rfftfreq(w, device=device)[None, :]
    rho = torch.sqrt(fy**2 + fx**2) / (0.5**0.5)
    return torch.clamp((rho * n_bands).floor().long(), max=n_bands - 1)


class FoRA(Method):
    name = "fora"
    test_hyper = {"grid": (2, 3)}
    mergeable = False
    merge_refusal = "its frequency branch mixes tokens"
    hosts = frozenset({"linear", "fused_qkv", "mha", "in_proj", "conv2d"})
    formula = "r*(d_in + d_out) + r*n_bands per layer"

    def __init__(self, cfg: FoRAConfig, slot: SlotInfo):
        super().__init__(cfg, slot)
        self.n_bands, self.grid, self.prefix = cfg.n_bands, cfg.grid, cfg.prefix_tokens
        self.A = nn.Parameter(kaiming_(torch.empty(self.r, self.d_in)))
        self.B = nn.Parameter(torch.zeros(self.d_out, self.r))
        self.M = nn.Parameter(torch.zeros(self.r, cfg.n_bands))

    def _prefix(self, n_tokens: int) -> int:
        h, w = self.grid
        p = self.prefix if self.prefix is not None else int(n_tokens == 1 + h * w)
        if n_tokens - p != h * w:
            raise ValueError(
                f"fora: layer {self.slot_name} got {n_tokens} tokens, but grid={self.grid} "
                f"with prefix_tokens={p} needs {h * w + p}"
            )
        return p

    def _to_grid(self, z: Tensor) -> tuple[Tensor, int]:
        """z's grid part as (N, r, H, W), and the number of leading non-grid tokens."""
        if self.ops.channel_dim == 1:
            return z, 0
        if z.dim() == 4:
            return z.permute(0, 3, 1, 2), 0
        if z.dim() == 3 and self.grid is not None:
            p = self._prefix(z.shape[1])
            return z[:, p:].unflatten(1, self.grid).permute(0, 3, 1, 2), p
        raise ValueError(
            f"fora: layer {self.slot_name} needs a spatial grid: give input as (N, H, W, C) "
            f"or set grid=(H, W) for (N, H*W, C) tokens; got input with shape "
            f"{tuple(z.shape[:-1]) + ('C',)}"
        )

    def _from_grid(self, g: Tensor, like: Tensor, prefix: int) -> Tensor:
        if self.ops.channel_dim == 1:
            return g
        g = g.permute(0, 2, 3, 1)
        if like.dim() == 4:
            return g
        g = g.flatten(1, 2)
        return torch.cat([g.new_zeros(g.shape[0], prefix, g.shape[2]), g], 1) if prefix else g

    def delta(self, x: Tensor) -> Tensor:
        z = self.ops.down(self.drop(x), self.A)
        g, prefix = self._to_grid(z)
        h, w = g.shape[-2:]
        spec = torch.fft.rfft2(g.float())
        mask = self.M[:, band_index(h, w, self.n_bands, g.device)]  # (r, h, w//2+1)
        zf = torch.fft.irfft2(spec * mask, s=(h, w)).to(z.dtype)
        return self.ops.mix(z + self._from_grid(zf, z, prefix), self.B) * self.s
