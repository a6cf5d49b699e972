"""Activation checkpointing of a backbone's blocks (``trainer.activation_checkpointing``).

A wrapped block keeps no activations inside it for the backward pass: its forward runs
again during backward, ``y = checkpoint(block.forward, x)`` with ``use_reentrant=False``
(and the RNG state restored, so dropout draws the same mask). Peak activation memory of a
depth-L model drops from about ``L * (per-block activations)`` to ``L * (block input) +
one block's activations``, for about one extra forward pass of compute.

What stays exact inside a wrapped block (the tests check gradients against an unwrapped
model): adapter layers (LoRA and the rest), FoRA's token-grid reshapes, LARGO's tensor
hook on ``y = c D x`` (non-reentrant checkpointing runs backward through the original
graph, so the hook fires once per forward, never again for the recomputation).

The blocks (matched by class, so no backbone library is imported here):
    open_clip      ``ResidualAttentionBlock`` / ``CustomResidualAttentionBlock`` (image and
                   text transformers)
    SAM            ``segment_anything.modeling.image_encoder.Block`` (image encoder)
    torchvision    ``vision_transformer.EncoderBlock`` (ViT encoder layers)
    whisper        ``whisper.model.ResidualAttentionBlock`` (encoder and decoder blocks)
The wrap patches the instance's ``forward`` (a bound method, so ``copy.deepcopy`` of the
model, e.g. an EMA teacher, wraps the copy's own block): parameter names, state dicts and
adapter files are unchanged. Without gradients (evaluation, ``no_grad``) the block runs
plainly.
"""

from __future__ import annotations

import types

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

BLOCKS = frozenset(
    {
        "open_clip.transformer.ResidualAttentionBlock",
        "open_clip.transformer.CustomResidualAttentionBlock",
        "segment_anything.modeling.image_encoder.Block",
        "torchvision.models.vision_transformer.EncoderBlock",
        "whisper.model.ResidualAttentionBlock",
    }
)


def is_block(module: nn.Module) -> bool:
    """Whether ``module`` is one of the backbone blocks listed in ``BLOCKS``."""
    cls = type(module)
    return f"{cls.__module__}.{cls.__qualname__}" in BLOCKS


def _checkpointed_forward(self: nn.Module, *args, **kwargs):
    forward = type(self).forward
    if not torch.is_grad_enabled():
        return forward(self, *args, **kwargs)
    return checkpoint(forward, self, *args, use_reentrant=False, **kwargs)


def is_checkpointed(module: nn.Module) -> bool:
    return getattr(module.forward, "__func__", None) is _checkpointed_forward


def checkpoint_blocks(model: nn.Module) -> int:
    """Wrap every backbone block in ``model`` (idempotent); returns how many are wrapped."""
    n = 0
    for module in model.modules():
        if is_block(module):
            if not is_checkpointed(module):
                module.forward = types.MethodType(_checkpointed_forward, module)
            n += 1
    return n


def uncheckpoint_blocks(model: nn.Module) -> None:
    """Undo ``checkpoint_blocks`` (the class's own forward again)."""
    for module in model.modules():
        if is_checkpointed(module):
            del module.forward
