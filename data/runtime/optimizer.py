"""The pipelines' optimizer, adapted to the method once the pipeline has built its own.

Every pipeline's ``configure_optimizers`` builds AdamW over its trainable tensors (with its
own groups, e.g. a head at another lr) and an lr schedule. ``adapt_optimizer`` (called by
``AdapterHooks.on_fit_start``, after Lightning built them and before a resumed run loads
their state) replaces that optimizer when the model's method asks for it:

- a method that brings its own optimizer (ALLoRA, AltLoRA: ``protocol.method_optimizer``)
  gets the pipeline's groups with their ``lr``, ``betas``, ``eps`` and ``weight_decay``;
- methods that declare per-tensor options (``protocol.regroup``: SoRA's gate without
  weight decay) get the groups split accordingly, in an optimizer of the same class.

The lr schedulers are re-pointed to the new optimizer, one schedule entry per new group
(copied from the group it was split from), so the schedule is unchanged. Methods that
also train base weights (GORP) are refused by the pipelines (``check_method_supported``);
a loop that runs them (the continual protocol) builds their optimizer itself, with state
carried across tasks, so it is left alone here.
"""

from __future__ import annotations

import inspect

import torch

from lorakit.core import protocol


def _method_kwargs(old: torch.optim.Optimizer) -> dict:
    d = old.defaults
    out = {"weight_decay": d.get("weight_decay", 0.0)}
    if "betas" in d:
        out["betas"] = tuple(d["betas"])
    if "eps" in d:
        out["eps"] = d["eps"]
    return out


def _track_steps(opt: torch.optim.Optimizer) -> None:
    """Mark steps as torch's schedulers do (they warn about an unwrapped ``step``)."""
    step = opt.step

    def wrapper(*args, **kwargs):
        opt._opt_called = True
        return step(*args, **kwargs)

    wrapper._wrapped_by_lr_sched = True
    opt.step = wrapper


def _repoint(sched, old, new, origin: list[int]) -> None:
    sched.optimizer = new
    n_old = len(old.param_groups)
    for attr in ("lr_lambdas", "base_lrs", "_last_lr", "min_lrs", "max_lrs"):
        values = getattr(sched, attr, None)
        if isinstance(values, list) and len(values) == n_old:
            setattr(sched, attr, [values[i] for i in origin])
    if all("initial_lr" in g for g in new.param_groups) and hasattr(sched, "base_lrs"):
        sched.base_lrs = [g["initial_lr"] for g in new.param_groups]


def _trains_base_weights(model) -> bool:
    return any(getattr(m, "trains_base_weights", False) for _, m in protocol._methods(model))


def adapt_optimizer(trainer, model) -> torch.optim.Optimizer | None:
    """Swap the trainer's (single) optimizer for the method's; returns the new one or None."""
    if len(trainer.optimizers) != 1 or _trains_base_weights(model):
        return None
    old = trainer.optimizers[0]
    groups = [dict(g) for g in old.param_groups]
    new_groups, origin = protocol.regroup(groups, model)
    kw = _method_kwargs(old)
    new = protocol.method_optimizer(model, lr=old.defaults["lr"], params=new_groups, **kw)
    if new is None:
        if len(new_groups) == len(groups):
            return None
        accepted = inspect.signature(type(old)).parameters
        new = type(old)(new_groups, **{k: v for k, v in old.defaults.items() if k in accepted})
    _track_steps(new)
    for cfg in trainer.lr_scheduler_configs:
        if cfg.scheduler.optimizer is old:
            _repoint(cfg.scheduler, old, new, origin)
    trainer.strategy.optimizers = [new]
    return new
