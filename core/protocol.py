"""The training-protocol interface: what a method may need from a training loop beyond ``delta``.

A training loop (the shared Lightning callback, or a plain loop) calls, for a model carrying
lorakit adapters:

- ``prepare(model, batches, loss_fn)``: once, before the optimizer is built. Methods that
  declare ``needs_prepare = True`` (LoRA-SB) initialise from the gradients of a few batches.
- ``before_step(model)``: after backward, before each optimizer step.
- ``after_step(model)``: after each optimizer step (proximal steps, LARGO's radius, LoCA's
  location re-selection). Same as ``lorakit.core.after_optimizer_step``.
- ``state_dict(model)`` / ``load_state_dict(model, state)``: the methods' non-trainable
  state (buffers such as LoCA's locations and step count, LARGO's radius), so a checkpoint
  resumes exactly.
- ``method_optimizer(model, lr, **kw)``: the optimizer a method brings (GORP's projected
  Adam, which also trains base weights), or ``None``: the loop then builds its own over
  ``trainable_parameters(model)``. Its ``state_dict`` / ``load_state_dict`` hold the
  method's optimizer state (GORP: projections, task basis, moments, steps); checkpoint it
  with the model so a resumed run continues exactly.
- ``end_task(model, optimizer)``: after each task of a continual run (GORP grows its basis
  of earlier tasks' gradients and starts a fresh adapter); a no-op for other methods.

A method opts in by defining the hooks it needs: ``needs_prepare`` with ``begin_prepare()``,
``prepare_grads()``, ``end_prepare(n_batches)`` and ``abort_prepare()``; ``before_step()``;
``after_step()``; class-level ``make_optimizer(model, lr, **kw)`` and
``end_task(model, optimizer)`` (static: they act on the whole model).
Every other method is untouched, so a loop can call these for any method.
Methods are found by walking the model's modules, so this works for one adapter or many.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn

from .api import after_optimizer_step
from .methods.base import Method


def _methods(model: nn.Module) -> list[tuple[str, Method]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, Method)]


def needs_prepare(model: nn.Module) -> bool:
    return any(getattr(m, "needs_prepare", False) for _, m in _methods(model))


def _all_reduce_mean(tensors: list[Tensor]) -> None:
    if not tensors or not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return
    world = torch.distributed.get_world_size()
    for t in tensors:
        torch.distributed.all_reduce(t)
        t /= world


def prepare(
    model: nn.Module, batches: Iterable, loss_fn: Callable[[nn.Module, object], Tensor]
) -> int:
    """Run the ``prepare`` step of every method that declares one; returns batches used.

    ``loss_fn(model, batch)`` returns a scalar loss. Gradients of the adapter parameters
    from these passes are discarded, and the model's train/eval mode is restored."""
    ms = [m for _, m in _methods(model) if getattr(m, "needs_prepare", False)]
    if not ms:
        return 0
    was_training = model.training
    model.train()
    for m in ms:
        m.begin_prepare()
    n = 0
    try:
        for batch in batches:
            loss = loss_fn(model, batch)
            if not loss.requires_grad:
                raise ValueError("prepare: the loss does not depend on the adapters' layers")
            if not torch.isfinite(loss).all():
                raise ValueError(f"prepare: the loss of batch {n} is not finite ({float(loss)})")
            loss.backward()
            n += 1
        if n == 0:
            raise ValueError("prepare: no batches given; it needs at least one")
        _all_reduce_mean([g for m in ms for g in m.prepare_grads()])
        for m in ms:
            m.end_prepare(n)
    finally:
        for m in ms:
            m.abort_prepare()  # no-op after end_prepare; drops half-made state after an error
        for p in model.parameters():
            p.grad = None
        model.train(was_training)
    return n


def before_step(model: nn.Module) -> None:
    for _, m in _methods(model):
        hook = getattr(m, "before_step", None)
        if hook is not None:
            hook()


def after_step(model: nn.Module) -> None:
    """After each optimizer step (also averages step statistics across ranks)."""
    after_optimizer_step(model)


def _class_hooks(model: nn.Module, hook: str) -> list:
    """One per method class present in the model (these hooks act on the whole model)."""
    classes = {type(m): None for _, m in _methods(model)}
    return [getattr(c, hook) for c in classes if hasattr(c, hook)]


def method_optimizer(model: nn.Module, lr: float, **kw) -> torch.optim.Optimizer | None:
    """The optimizer the model's method provides, or ``None`` (use any optimizer)."""
    makers = _class_hooks(model, "make_optimizer")
    if len(makers) > 1:
        raise ValueError("the model mixes methods that each bring their own optimizer")
    return makers[0](model, lr, **kw) if makers else None


def end_task(model: nn.Module, optimizer: torch.optim.Optimizer | None) -> None:
    """Close a task of a continual run for every method that keeps cross-task state."""
    for hook in _class_hooks(model, "end_task"):
        hook(model, optimizer)


def state_dict(model: nn.Module) -> dict[str, Tensor]:
    """Every method's persistent buffers (its non-trainable state), by module name."""
    out = {}
    for name, m in _methods(model):
        for key, buf in m.named_buffers(recurse=False):
            if key not in m._non_persistent_buffers_set:
                out[f"{name}.{key}"] = buf.detach().clone()
    return out


@torch.no_grad()
def load_state_dict(model: nn.Module, state: dict[str, Tensor]) -> None:
    """Restore what ``state_dict`` returned; a missing or extra entry is an error."""
    have = state_dict(model)
    missing, extra = sorted(set(have) - set(state)), sorted(set(state) - set(have))
    if missing or extra:
        raise ValueError(
            f"method state does not fit this model: missing {missing[:5]}, unexpected {extra[:5]}"
        )
    for key, value in state.items():
        module_name, _, buf = key.rpartition(".")
        module = model.get_submodule(module_name)
        current = module._buffers[buf]
        module._buffers[buf] = value.to(current.device, current.dtype).clone()
