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
    ResNet         each stage (``layer1`` .. ``layer4``: an ``nn.Sequential`` of torchvision's
                   ``BasicBlock`` / ``Bottleneck``), one checkpoint per stage
BatchNorm in training mode (a ResNet fine-tuned whole) would update its running statistics
a second time when the block recomputes; the recomputation restores them afterwards
(``context_fn``), so a checkpointed step leaves the same statistics as a plain one.
The wrap patches the instance's ``forward`` (a bound method, so ``copy.deepcopy`` of the
model, e.g. an EMA teacher, wraps the copy's own block): parameter names, state dicts and
adapter files are unchanged. Without gradients (evaluation, ``no_grad``) the block runs
plainly.
"""

from __future__ import annotations

import contextlib
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
# a ResNet stage is a plain nn.Sequential: matched by what it holds
RESNET_UNITS = frozenset(
    {"torchvision.models.resnet.BasicBlock", "torchvision.models.resnet.Bottleneck"}
)


def _name(module: nn.Module) -> str:
    cls = type(module)
    return f"{cls.__module__}.{cls.__qualname__}"


def is_resnet_stage(module: nn.Module) -> bool:
    """A torchvision ResNet stage: an ``nn.Sequential`` of ``BasicBlock``/``Bottleneck``."""
    return (
        type(module) is nn.Sequential
        and len(module) > 0
        and all(_name(child) in RESNET_UNITS for child in module)
    )


def is_block(module: nn.Module) -> bool:
    """Whether ``module`` is one of the backbone blocks listed in ``BLOCKS`` or a ResNet stage."""
    return _name(module) in BLOCKS or is_resnet_stage(module)


@contextlib.contextmanager
def _keep_norm_statistics(module: nn.Module):
    """Run the recomputation, then put back the BatchNorm running statistics it updated
    (the forward pass already counted this batch once)."""
    norms = [
        m
        for m in module.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training and m.track_running_stats
    ]
    saved = [[b.clone() for b in m.buffers(recurse=False)] for m in norms]
    try:
        yield
    finally:
        with torch.no_grad():
            for m, old in zip(norms, saved, strict=True):
                for b, o in zip(m.buffers(recurse=False), old, strict=True):
                    b.copy_(o)


def _checkpointed_forward(self: nn.Module, *args, **kwargs):
    forward = type(self).forward
    if not torch.is_grad_enabled():
        return forward(self, *args, **kwargs)
    return checkpoint(
        forward,
        self,
        *args,
        use_reentrant=False,
        context_fn=lambda: (contextlib.nullcontext(), _keep_norm_statistics(self)),
        **kwargs,
    )


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
