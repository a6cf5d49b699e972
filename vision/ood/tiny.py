"""The tiny torchvision ViT of the robustness pipeline's tests and demos (``tiny_vit``)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from torch import nn

if TYPE_CHECKING:  # build.py holds the config and imports this module
    from .build import BackboneConfig


def tiny_vit(cfg: BackboneConfig, num_classes: int) -> nn.Module:
    """``VisionTransformer(image_size, patch_size, depth, heads, width, mlp 2 * width)``,
    random weights (the global RNG), optionally with a stride-2 conv stem."""
    from torchvision.models.vision_transformer import VisionTransformer

    if cfg.image_size % cfg.patch_size:
        raise ValueError(
            f"backbone: image_size {cfg.image_size} is not a multiple of patch_size {cfg.patch_size}"
        )
    stem = None
    if (
        cfg.conv_stem
    ):  # 3x3 stride-2 convs down to the patch grid: ViTs then learn fast on little data
        from torchvision.models.vision_transformer import ConvStemConfig

        n = int(math.log2(cfg.patch_size))
        if 2**n != cfg.patch_size:
            raise ValueError(
                f"backbone.conv_stem needs a power-of-two patch_size, got {cfg.patch_size}"
            )
        stem = [ConvStemConfig(cfg.width // 2 ** (n - 1 - i), 3, 2) for i in range(n)]
    return VisionTransformer(
        cfg.image_size,
        cfg.patch_size,
        cfg.depth,
        cfg.heads,
        cfg.width,
        2 * cfg.width,
        num_classes=num_classes,
        conv_stem_configs=stem,
    )
