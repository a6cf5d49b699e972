"""Whole-model operations on injected adapters: merge, disable, hooks for training loops.

Merge tolerance: ``merge`` adds ``delta_weight`` in float32 and rounds once to the weight's
dtype, so merged and unmerged outputs differ by that rounding only (float32: ~1e-6
relative; bf16 / fp16 weights: about one unit in the last place of the weight, ~4e-3 /
~5e-4 relative). ``unmerge`` restores fp16 / bf16 weights bit for bit (a copy of the
original slot weight is kept while merged) and float32 weights to float tolerance.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .adapters import (
    active_adapters,
    adapter_methods,
    disable_adapter,
    enable_adapter,
    hosts,
    named_adapted,
    named_hosts,
    named_methods,
)
from .hosts import Host
from .method import Method


def _require_hosts(model: nn.Module) -> list[Host]:
    found = hosts(model)
    if not found:
        raise ValueError(
            "model has no lorakit adapter: call inject(model, config) or load_adapter first"
        )
    return found


methods = adapter_methods  # the older name (``lorakit.core.methods`` is the package)


def active_methods(model: nn.Module) -> list[Method]:
    active = set(active_adapters(model))
    return [m for _, _, m in named_methods(model) if m.adapter_name in active]


def merge(model: nn.Module, names: list[str] | str | None = None) -> None:
    """Fold the deltas of ``names`` (default: the active adapters) into the base weights
    (``W = W0 + dW``); merged layers then cost exactly the base layer."""
    _require_hosts(model)
    names = active_adapters(model) if names is None else names
    names = [names] if isinstance(names, str) else list(names)
    for name, slot, m in named_methods(model):
        if m.adapter_name in names and not m.mergeable:
            raise ValueError(
                f"{m.name} is not mergeable (layer {name}, slot {slot}): {m.merge_refusal}; "
                "keep the adapter as a module (save_adapter) instead"
            )
    for _, host in named_hosts(model):
        host.merge(names)


def unmerge(model: nn.Module) -> None:
    """Undo every merge (bit-exact for fp16 / bf16 weights)."""
    for host in _require_hosts(model):
        host.unmerge()


def disable(model: nn.Module) -> disable_adapter:
    """Run the base model only (adapters kept, not applied); also a context manager."""
    _require_hosts(model)
    return disable_adapter(model)


def enable(model: nn.Module) -> None:
    _require_hosts(model)
    enable_adapter(model)


class TrainableParameters(list):
    """The adapter parameters (a list, for an optimizer); ``int(...)`` counts elements."""

    @property
    def numel(self) -> int:
        return sum(p.numel() for p in self)

    def __int__(self) -> int:
        return self.numel


def trainable_parameters(model: nn.Module) -> TrainableParameters:
    return TrainableParameters(p for p in model.parameters() if p.requires_grad)


def regularization_loss(model: nn.Module) -> Tensor:
    """Sum of the methods' penalties (S2-LoRA's L1 on rank coefficients); 0 otherwise."""
    terms = [r for m in active_methods(model) if (r := m.regularizer()) is not None]
    if not terms:
        p = next(model.parameters(), None)
        return torch.zeros((), device=p.device if p is not None else "cpu")
    return torch.stack([t.float() for t in terms]).sum()


def after_optimizer_step(model: nn.Module) -> None:
    """Call after each optimizer step: S2-LoRA's proximal step, LARGO's radius update.

    In a distributed run the statistics a method gathered in backward (LARGO's radius
    gradients) are averaged across ranks first, so every rank takes the same step.
    """
    ms = active_methods(model)
    stats = [t for m in ms for t in m.step_stats()]
    if stats and torch.distributed.is_available() and torch.distributed.is_initialized():
        flat = torch.stack([t.float() for t in stats])
        torch.distributed.all_reduce(flat)
        flat /= torch.distributed.get_world_size()
        for t, v in zip(stats, flat, strict=True):
            t.copy_(v)
    for m in ms:
        m.after_step()


def remove_adapter(model: nn.Module, merge_first: bool = False) -> nn.Module:
    """Unwrap every host and saved module (merging the active adapters first if asked),
    leaving the plain base model (with the active adapter's saved modules, if any)."""
    if merge_first:
        merge(model)
    for name, m in reversed(named_adapted(model)):
        if isinstance(m, Host):
            if m.merged and not merge_first:
                m.unmerge()
            inner = m.base
        else:
            inner = m.current() if merge_first else m.original
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, inner)
    return model
