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
- ``param_groups(model, lr, weight_decay)`` / ``regroup(groups, model)``: parameter groups
  split by what methods declare per tensor (``param_options``: SoRA's gate and DiffoRA's
  architecture logits get no weight decay); ``method_optimizer(..., params=groups)`` gives
  a method's optimizer the loop's groups (a head included).
- ``after_step(model, optimizer)``: also applies rank changes (``resize``) the methods made
  in their hooks and rebuilds the optimizer state of exactly the changed tensors
  (``lorakit.core.resize``); methods see the step's learning rate as ``m.step_lr`` (taken
  in ``before_step(model, optimizer)`` when that ran, so a scheduler step in between does
  not change it).
- ``finish(model, optimizer)``: once, at the end of training (SoRA removes its zeroed
  ranks); ``ranks(model)``: the current per-slot ranks of rank-changing methods.

Every hook is declared on ``lorakit.core.method.Method`` with a no-op default, and a method
overrides the ones it needs: ``needs_prepare`` with ``begin_prepare()``,
``prepare_grads()``, ``end_prepare(n_batches)`` and ``abort_prepare()``; ``before_step()``;
``after_step()``; ``finish()``; class-level ``make_optimizer(model, lr, **kw)``,
``model_after_step(model)`` (decisions across layers: IncreLoRA's growth, DiffoRA's
discretisation) and ``end_task(model, optimizer)`` (static: they act on the whole model).
So a loop calls these for any method.
Methods are found by walking the model's modules, so this works for one adapter or many.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn

from .api import after_optimizer_step
from .method import Method
from .resize import Resize, rebuild_optimizer_state


def _methods(model: nn.Module) -> list[tuple[str, Method]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, Method)]


def needs_prepare(model: nn.Module) -> bool:
    return any(m.needs_prepare for _, m in _methods(model))


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
    ms = [m for _, m in _methods(model) if m.needs_prepare]
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
                raise ValueError(f"prepare: the loss of batch {n} is not finite ({float(loss.detach())})")
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


def _set_step_lr(model: nn.Module, optimizer, pinned: bool) -> None:
    """Give every method the lr of its tensors' group as ``m.step_lr`` (of the tensor a
    method names in ``step_lr_tensor``, else its first). ``before_step``
    pins it: a scheduler may change the lr between the step and ``after_step``."""
    lrs = _lr_of(optimizer)
    for _, m in _methods(model):
        if not pinned and m._lr_pinned:
            m._lr_pinned = False
            continue
        first = m.lr_parameter()
        m.step_lr = lrs.get(id(first)) if first is not None else None
        m._lr_pinned = pinned


def before_step(model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> None:
    """After backward, before the optimizer step (gradients are complete)."""
    if optimizer is not None:
        _set_step_lr(model, optimizer, pinned=True)
    for _, m in _methods(model):
        m.before_step()


def _lr_of(optimizer: torch.optim.Optimizer | None) -> dict[int, float]:
    if optimizer is None:
        return {}
    return {id(p): float(g["lr"]) for g in optimizer.param_groups for p in g["params"]}


def after_step(model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> list[Resize]:
    """After each optimizer step: per-layer hooks (averaging step statistics across ranks
    first), then model-level hooks; rank changes they made are applied to ``optimizer``'s
    state. Returns the resizes (empty when no rank changed)."""
    if optimizer is not None:
        _set_step_lr(model, optimizer, pinned=False)
    after_optimizer_step(model)
    for cls in _classes(model):
        cls.model_after_step(model)
    return apply_resizes(model, optimizer)


def apply_resizes(model: nn.Module, optimizer: torch.optim.Optimizer | None) -> list[Resize]:
    changes = [c for _, m in _methods(model) for c in m.take_resizes()]
    rebuild_optimizer_state(optimizer, changes)
    return changes


def finish(model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> list[Resize]:
    """Once at the end of training: each method's ``finish()`` (SoRA drops zeroed ranks)."""
    for _, m in _methods(model):
        m.finish()
    return apply_resizes(model, optimizer)


def rank_changing_methods(model: nn.Module) -> list[Method]:
    return [m for _, m in _methods(model) if m.rank_changing]


def ranks(model: nn.Module) -> dict[str, int]:
    """Current rank of every slot of a rank-changing method, by ``layer[:slot]`` name
    (SoRA before ``finish``: its non-zero gates)."""
    return {
        m.slot_name: int(m.active_rank()) for m in rank_changing_methods(model)
    }


def rank_changing(model: nn.Module) -> bool:
    return bool(rank_changing_methods(model))


def _options(model: nn.Module) -> dict[int, dict]:
    """Per-parameter group options that methods declare (``param_options`` by tensor name)."""
    out: dict[int, dict] = {}
    for _, m in _methods(model):
        for attr, opts in m.param_options.items():
            out[id(m.get_parameter(attr))] = dict(opts)
    return out


def regroup(groups: list[dict], model: nn.Module) -> tuple[list[dict], list[int]]:
    """Split each param group by the methods' declared options; returns the new groups
    and, per new group, the index of the group it came from (to re-point a scheduler).
    ``lr_scale`` multiplies the group's ``lr``; other options replace the group's value."""
    opts = _options(model)
    out, origin = [], []
    for i, g in enumerate(groups):
        split: dict[tuple, list] = {}
        for p in g["params"]:
            key = tuple(sorted(opts.get(id(p), {}).items()))
            split.setdefault(key, []).append(p)
        for key, params in split.items():
            ng = {k: v for k, v in g.items() if k != "params"}
            for k, v in key:
                if k == "lr_scale":
                    ng["lr"] = ng.get("lr", 0.0) * v
                    if "initial_lr" in ng:
                        ng["initial_lr"] = ng["initial_lr"] * v
                else:
                    ng[k] = v
            ng["params"] = params
            out.append(ng)
            origin.append(i)
    return out, origin


def param_groups(model: nn.Module, lr: float, weight_decay: float = 0.0, params=None) -> list[dict]:
    """Groups over ``params`` (default: the trainable parameters) with the methods' options."""
    params = [p for p in model.parameters() if p.requires_grad] if params is None else list(params)
    return regroup([{"params": params, "lr": lr, "weight_decay": weight_decay}], model)[0]


def _classes(model: nn.Module) -> list[type[Method]]:
    """Each method class present in the model once (whole-model hooks run once per class)."""
    return list({type(m): None for _, m in _methods(model)})


def method_optimizer(
    model: nn.Module, lr: float, params=None, **kw
) -> torch.optim.Optimizer | None:
    """The optimizer the model's method provides, or ``None`` (use any optimizer).
    ``params``: param groups (or a list) the loop wants trained, extra tensors such as a
    classifier head included; methods that accept it step the other tensors with AdamW."""
    makers = [c.make_optimizer for c in _classes(model) if c.make_optimizer is not None]
    if len(makers) > 1:
        raise ValueError("the model mixes methods that each bring their own optimizer")
    if not makers:
        return None
    return makers[0](model, lr, **kw) if params is None else makers[0](model, lr, params=params, **kw)


def end_task(model: nn.Module, optimizer: torch.optim.Optimizer | None) -> None:
    """Close a task of a continual run for every method that keeps cross-task state."""
    for cls in _classes(model):
        cls.end_task(model, optimizer)


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
