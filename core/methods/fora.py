"""FoRA: frequency-aware LoRA for layers that see a spatial token grid (SAM's encoder).

``z = A x`` (r channels per token on an ``H x W`` grid); frequency branch
``z_f = irfft2(M (.) rfft2(z))`` where the learnable radial mask ``M`` has one value per
rank channel and radial band: frequency ``(f_y, f_x)`` (cycles/sample) has normalised
radius ``rho = sqrt(f_y^2 + f_x^2) / sqrt(1/2)`` and band ``min(floor(rho * n_bands),
n_bands - 1)``. ``delta(x) = s * B (z + z_f)``; ``M`` starts at 0, so FoRA starts as LoRA.

Input layouts: ``(N, H, W, C)`` (SAM blocks), ``(N, L, C)`` with ``grid=(H, W)`` in the
config, or a Conv2d feature map. Trainable per slot: ``r * (d_in + d_out) + r * n_bands``.
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
    method = "fora"

    def validate(self) -> None:
        super().validate()
        if not isinstance(self.n_bands, int) or self.n_bands < 1:
            raise ValueError(f"fora: n_bands must be a positive integer, got {self.n_bands!r}")
        if self.grid is not None and (len(self.grid) != 2 or min(self.grid) < 1):
            raise ValueError(f"fora: grid must be (H, W) with positive sizes, got {self.grid!r}")


def band_index(h: int, w: int, n_bands: int, device=None) -> Tensor:
    """Band of every rfft2 frequency of an ``h x w`` grid, shape ``(h, w // 2 + 1)``."""
    fy = torch.fft.fftfreq(h, device=device)[:, None]
    fx = torch.fft.rfftfreq(w, device=device)[None, :]
    rho = torch.sqrt(fy**2 + fx**2) / (0.5**0.5)
    return torch.clamp((rho * n_bands).floor().long(), max=n_bands - 1)


class FoRA(Method):
    name = "fora"
    mergeable = False
    hosts = frozenset({"linear", "fused_qkv", "conv2d"})
    formula = "r*(d_in + d_out) + r*n_bands per layer"

    def __init__(self, cfg: FoRAConfig, slot: SlotInfo):
        super().__init__(cfg, slot)
        self.n_bands, self.grid = cfg.n_bands, cfg.grid
        self.A = nn.Parameter(kaiming_(torch.empty(self.r, self.d_in)))
        self.B = nn.Parameter(torch.zeros(self.d_out, self.r))
        self.M = nn.Parameter(torch.zeros(self.r, cfg.n_bands))

    def _to_grid(self, z: Tensor) -> tuple[Tensor, tuple[int, ...]]:
        """Return z as (N, r, H, W) and the shape to restore."""
        if self.ops.channel_dim == 1:
            return z, z.shape
        if z.dim() == 4:
            return z.permute(0, 3, 1, 2), z.shape
        if z.dim() == 3 and self.grid is not None:
            h, w = self.grid
            if z.shape[1] != h * w:
                raise ValueError(
                    f"fora: layer {self.slot_name} got {z.shape[1]} tokens, but grid={self.grid} "
                    f"needs {h * w}"
                )
            return z.unflatten(1, (h, w)).permute(0, 3, 1, 2), z.shape
        raise ValueError(
            f"fora: layer {self.slot_name} needs a spatial grid: give input as (N, H, W, C) "
            f"or set grid=(H, W) for (N, H*W, C) tokens; got input with shape "
            f"{tuple(z.shape[:-1]) + ('C',)}"
        )

    def _from_grid(self, g: Tensor, shape: tuple[int, ...]) -> Tensor:
        if self.ops.channel_dim == 1:
            return g
        g = g.permute(0, 2, 3, 1)
        return g if len(shape) == 4 else g.flatten(1, 2)

    def delta(self, x: Tensor) -> Tensor:
        z = self.ops.down(self.drop(x), self.A)
        g, shape = self._to_grid(z)
        h, w = g.shape[-2:]
        spec = torch.fft.rfft2(g.float())
        mask = self.M[:, band_index(h, w, self.n_bands, g.device)]  # (r, h, w//2+1)
        zf = torch.fft.irfft2(spec * mask, s=(h, w)).to(z.dtype)
        return self.ops.mix(z + self._from_grid(zf, shape), self.B) * self.s
