"""Build SAM from segment-anything's own classes: vit_b / vit_l / vit_h from a local
checkpoint, or a tiny random configuration (seeded) for tests and offline demos.

The builders are plain functions in one dict, like ``segment_anything.build_sam``; they
return a ``segment_anything.modeling.Sam``. Checkpoints are read with
``torch.load(weights_only=True)`` (tensors only, no pickled code).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch
from segment_anything.modeling import (
    ImageEncoderViT,
    MaskDecoder,
    PromptEncoder,
    Sam,
    TwoWayTransformer,
)
from torch import nn

from .config import BackboneConfig

CHECKPOINT_URLS = {
    "vit_b": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
    "vit_l": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth",
    "vit_h": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth",
}
# embed_dim, depth, heads, global attention blocks (the published SAM encoders)
VIT_SIZES = {
    "vit_b": (768, 12, 12, (2, 5, 8, 11)),
    "vit_l": (1024, 24, 16, (5, 11, 17, 23)),
    "vit_h": (1280, 32, 16, (7, 15, 23, 31)),
}


def _assemble(
    img_size: int,
    embed: int,
    depth: int,
    heads: int,
    window: int,
    global_idx,
    dim: int,
    decoder_depth: int,
    decoder_mlp: int,
    decoder_heads: int,
) -> Sam:
    grid = img_size // 16
    encoder = ImageEncoderViT(
        img_size=img_size,
        patch_size=16,
        embed_dim=embed,
        depth=depth,
        num_heads=heads,
        mlp_ratio=4.0,
        out_chans=dim,
        qkv_bias=True,
        norm_layer=partial(nn.LayerNorm, eps=1e-6),
        use_rel_pos=True,
        window_size=window,
        global_attn_indexes=tuple(global_idx),
    )
    prompt = PromptEncoder(
        embed_dim=dim,
        image_embedding_size=(grid, grid),
        input_image_size=(img_size, img_size),
        mask_in_chans=16,
    )
    transformer = TwoWayTransformer(
        depth=decoder_depth, embedding_dim=dim, mlp_dim=decoder_mlp, num_heads=decoder_heads
    )
    decoder = MaskDecoder(
        num_multimask_outputs=3,
        transformer=transformer,
        transformer_dim=dim,
        iou_head_depth=3,
        iou_head_hidden_dim=dim,
    )
    return Sam(
        image_encoder=encoder,
        prompt_encoder=prompt,
        mask_decoder=decoder,
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )


def build_tiny(cfg: BackboneConfig) -> Sam:
    """A small SAM (same classes, same wiring), random weights from ``cfg.seed``; with
    ``pretrain_steps`` the stand-in pretraining's cached weights (``pretrain.py``)."""
    sam = random_tiny(cfg)
    if cfg.pretrain_steps > 0:
        from .pretrain import ensure_pretrained  # lazily: it imports the data generators

        load_checkpoint(sam, ensure_pretrained(cfg, partial(random_tiny, cfg)), "tiny")
    return sam.eval()


def random_tiny(cfg: BackboneConfig) -> Sam:
    """The tiny SAM with its random weights from ``cfg.seed`` (the same for the same seed)."""
    if cfg.img_size % 16 or cfg.img_size < 32:
        raise ValueError(
            f"backbone.img_size must be a multiple of 16 and >= 32, got {cfg.img_size}"
        )
    grid = cfg.img_size // 16
    if cfg.window and grid % cfg.window:
        raise ValueError(
            f"backbone.window={cfg.window} must divide the token grid {grid} (img_size / 16)"
        )
    if cfg.embed_dim % cfg.heads or cfg.dim % 16:
        raise ValueError(
            f"backbone: embed_dim must divide by heads and dim by 16; got embed_dim={cfg.embed_dim}, "
            f"heads={cfg.heads}, dim={cfg.dim}"
        )
    with torch.random.fork_rng():
        torch.manual_seed(cfg.seed)
        sam = _assemble(
            cfg.img_size,
            cfg.embed_dim,
            cfg.depth,
            cfg.heads,
            cfg.window,
            (cfg.depth - 1,),
            cfg.dim,
            decoder_depth=2,
            decoder_mlp=4 * cfg.dim,
            decoder_heads=2,
        )
    return sam.eval()


def load_checkpoint(sam: Sam, path: Path, name: str) -> None:
    """Load a SAM state dict from ``path`` (tensors only: ``weights_only=True``)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for a bad file
        raise ValueError(f"cannot read SAM checkpoint {path}: {e}") from None
    if not isinstance(state, dict):
        raise ValueError(f"SAM checkpoint {path} holds a {type(state).__name__}, not a state dict")
    try:
        missing, unexpected = sam.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatches
        raise ValueError(f"SAM checkpoint {path} does not fit {name}: {str(e)[:400]}") from None
    if missing or unexpected:
        raise ValueError(
            f"SAM checkpoint {path} does not fit {name}: missing {missing[:4]}, "
            f"unexpected {unexpected[:4]}"
        )


def build_vit(cfg: BackboneConfig) -> Sam:
    """Published SAM encoder sizes (1024 px input, 256-wide decoder) with local weights."""
    if not cfg.checkpoint:
        raise ValueError(
            f"backbone {cfg.name} needs backbone.checkpoint: download {CHECKPOINT_URLS[cfg.name]} "
            "and pass its local path"
        )
    path = Path(cfg.checkpoint).expanduser()
    if not path.is_file():
        raise ValueError(
            f"SAM checkpoint {path} not found: download {CHECKPOINT_URLS[cfg.name]} and put it there "
            "(this machine cannot download it for you)"
        )
    embed, depth, heads, global_idx = VIT_SIZES[cfg.name]
    sam = _assemble(
        1024,
        embed,
        depth,
        heads,
        14,
        global_idx,
        256,
        decoder_depth=2,
        decoder_mlp=2048,
        decoder_heads=8,
    )
    load_checkpoint(sam, path, cfg.name)
    return sam.eval()


BUILDERS = {"tiny": build_tiny, "vit_b": build_vit, "vit_l": build_vit, "vit_h": build_vit}


def build_sam(cfg: BackboneConfig) -> Sam:
    if cfg.name not in BUILDERS:
        raise ValueError(f"unknown backbone.name {cfg.name!r}; choose from {', '.join(BUILDERS)}")
    return BUILDERS[cfg.name](cfg)


def input_size(sam: Sam) -> int:
    return int(sam.image_encoder.img_size)
