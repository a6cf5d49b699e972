"""Multi-scale frequency-aware fusion in SAM's mask head (FCL-COD, **reading**).

The decoder's upscaled feature map ``x`` (B, C, H, W) (SAM: C = dim / 8, H = W = 4x the
token grid) is average-pooled to each scale ``s`` in ``scales``; at each scale the FFT
magnitude ``|rfft2(x_s)|`` drives a learned per-frequency gain (a 1x1 convolution of
``log(1 + |X|)`` squashed by tanh), the re-weighted spectrum is transformed back,
upsampled to ``H x W``, and the scales are fused by a 1x1 convolution added to ``x``.
The fusing convolution starts at zero, so the head starts as SAM's own.
Trainable: ``len(scales) * (C^2 + C) + len(scales) * C^2 + C``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class FrequencyFusion(nn.Module):
    """(B, C, H, W) -> (B, C, H, W); identity at initialisation."""

    def __init__(self, channels: int, scales: tuple[int, ...] = (1, 2, 4)):
        super().__init__()
        if not scales or any(s < 1 for s in scales):
            raise ValueError(f"fusion scales must be positive integers, got {scales!r}")
        self.scales = tuple(int(s) for s in scales)
        self.gains = nn.ModuleList(nn.Conv2d(channels, channels, 1) for _ in self.scales)
        self.fuse = nn.Conv2d(channels * len(self.scales), channels, 1)
        nn.init.zeros_(self.fuse.weight)
        nn.init.zeros_(self.fuse.bias)

    def branch(self, x: Tensor, scale: int, gain: nn.Conv2d) -> Tensor:
        xs = F.avg_pool2d(x, scale) if scale > 1 else x
        spec = torch.fft.rfft2(xs.float(), norm="ortho")  # (B, C, h, w//2+1)
        weight = 1 + torch.tanh(gain(torch.log1p(spec.abs())))
        ys = torch.fft.irfft2(spec * weight, s=xs.shape[-2:], norm="ortho").to(x.dtype)
        if scale > 1:
            ys = F.interpolate(ys, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return ys

    def forward(self, x: Tensor) -> Tensor:
        if min(x.shape[-2:]) < max(self.scales):
            raise ValueError(
                f"fusion: feature map {tuple(x.shape[-2:])} is smaller than scale {max(self.scales)}"
            )
        feats = [self.branch(x, s, g) for s, g in zip(self.scales, self.gains, strict=True)]
        return x + self.fuse(torch.cat(feats, 1))


class FusedUpscaling(nn.Module):
    """SAM's ``output_upscaling`` followed by the fusion; keeps the last feature map.

    ``features`` holds the (B, C, H, W) map the mask is read from, for the contrastive loss.
    """

    def __init__(self, upscaling: nn.Module, fusion: FrequencyFusion | None):
        super().__init__()
        self.upscaling, self.fusion = upscaling, fusion
        self.features: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        y = self.upscaling(x)
        if self.fusion is not None:
            y = self.fusion(y)
        self.features = y
        return y
