"""Rank changes during training: resizable LoRA-shaped methods and their optimizer state.

A resize keeps the *same* ``nn.Parameter`` objects (the optimizer's param lists stay
valid) and swaps their data: ``p.data = cat(p.index_select(dim, keep), new, dim)``. Each
resize is recorded as a ``Resize`` (parameter, dim, kept indices, number of new entries);
``rebuild_optimizer_state`` applies the same index map to every state tensor of that
parameter shaped like it (Adam's moments): kept rows keep their moments, new rows start at
zero, and every other tensor's state is untouched. A re-factorisation (LoRA-Squeeze's SVD)
keeps no index, so its moments restart at zero.

``lorakit.core.methods.ranked.RankedLoRA`` is the LoRA-shaped base of the rank-changing methods (SoRA, IncreLoRA,
LoRA-Squeeze, DiffoRA): ``A (r x d_in)``, ``B (d_out x r)``, optional per-rank vectors,
a scale fixed at construction (a rank change never rescales the update), rank 0 allowed
(the slot then adds exactly 0). Loading a state dict whose ``A`` has another rank resizes
the slot first, so checkpoints and adapter files carry the current ranks in their shapes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass
class Resize:
    """One parameter's rank change: rows ``keep`` along ``dim`` kept, ``n_new`` appended."""

    param: nn.Parameter
    dim: int
    keep: Tensor
    n_new: int
    old_shape: torch.Size


@torch.no_grad()
def resize_param(p: nn.Parameter, dim: int, keep: Tensor, new: Tensor | None = None) -> Resize:
    """Keep indices ``keep`` of ``p`` along ``dim`` and append ``new`` (same other dims)."""
    old_shape = p.shape
    keep = keep.to(device=p.device, dtype=torch.long)
    parts = [p.data.index_select(dim, keep)]
    if new is not None:
        parts.append(new.to(p.device, p.dtype))
    p.data = torch.cat(parts, dim).contiguous()
    p.grad = None
    return Resize(p, dim, keep.cpu(), 0 if new is None else new.shape[dim], old_shape)


@torch.no_grad()
def rebuild_optimizer_state(optimizer: torch.optim.Optimizer | None, changes: list[Resize]) -> int:
    """Apply each resize's index map to the optimizer state of its parameter; returns how
    many state tensors were rebuilt. State of unchanged parameters is never touched."""
    if optimizer is None:
        return 0
    n = 0
    for ch in changes:
        state = optimizer.state.get(ch.param)
        if not state:
            continue
        for key, v in list(state.items()):
            if not torch.is_tensor(v) or v.shape != ch.old_shape:
                continue
            kept = v.index_select(ch.dim, ch.keep.to(v.device))
            shape = list(kept.shape)
            shape[ch.dim] = ch.n_new
            state[key] = torch.cat([kept, kept.new_zeros(shape)], ch.dim).contiguous()
            n += 1
    return n
