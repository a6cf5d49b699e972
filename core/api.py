"""Whole-model operations on injected adapters: merge, disable, hooks for training loops."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .hosts import Host
from .inject import hosts, named_hosts
from .methods import Method


def _require_hosts(model: nn.Module) -> list[Host]:
    found = hosts(model)
    if not found:
        raise ValueError(
            "model has no lorakit adapter: call inject(model, config) or load_adapter first"
        )
    return found


def methods(model: nn.Module) -> list[Method]:
    return [m for h in hosts(model) for m in h.adapters.values()]


def merge(model: nn.Module) -> None:
    """Fold every delta into its base weight (``W = W0 + dW``); hosts then call the base only."""
    found = _require_hosts(model)
    for name, host in named_hosts(model):
        for slot, m in host.adapters.items():
            if not m.mergeable:
                raise ValueError(
                    f"{m.name} is not mergeable (layer {name}, slot {slot}): its frequency "
                    "branch mixes tokens; keep the adapter as a module (save_adapter) instead"
                )
    for host in found:
        host.merge()


def unmerge(model: nn.Module) -> None:
    for host in _require_hosts(model):
        host.unmerge()


def disable(model: nn.Module) -> None:
    """Run the base model only (adapters kept, not applied)."""
    for host in _require_hosts(model):
        host.disabled = True


def enable(model: nn.Module) -> None:
    for host in _require_hosts(model):
        host.disabled = False


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
    terms = [r for m in methods(model) if (r := m.regularizer()) is not None]
    if not terms:
        p = next(model.parameters(), None)
        return torch.zeros((), device=p.device if p is not None else "cpu")
    return torch.stack([t.float() for t in terms]).sum()


def after_optimizer_step(model: nn.Module) -> None:
    """Call after each optimizer step: S2-LoRA's proximal step, LARGO's radius update.

    In a distributed run the statistics a method gathered in backward (LARGO's radius
    gradients) are averaged across ranks first, so every rank takes the same step.
    """
    ms = methods(model)
    stats = [t for m in ms if hasattr(m, "step_stats") for t in m.step_stats()]
    if stats and torch.distributed.is_available() and torch.distributed.is_initialized():
        flat = torch.stack([t.float() for t in stats])
        torch.distributed.all_reduce(flat)
        flat /= torch.distributed.get_world_size()
        for t, v in zip(stats, flat, strict=True):
            t.copy_(v)
    for m in ms:
        m.after_step()


def remove_adapter(model: nn.Module, merge_first: bool = False) -> nn.Module:
    """Unwrap every host (merging first if asked), leaving the plain base model."""
    if merge_first:
        merge(model)
    for name, host in named_hosts(model):
        if host.merged and not merge_first:
            host.unmerge()
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, host.base)
    if hasattr(model, "_lorakit_config"):
        del model._lorakit_config
    return model
