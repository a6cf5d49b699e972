"""``AdapterModule``: the one LightningModule base every pipeline trains with.

A pipeline's module supplies the adapted network as ``self.model``, its loss
(``task_loss(batch, batch_idx)``, which may log its own terms) and, when it needs more than
one group of trainable tensors at ``lr``, ``param_groups()``. The base owns the rest:

- the optimizer, built once: the pipeline's groups split by what methods declare per tensor
  (``protocol.regroup``: SoRA's gate without weight decay), given to the method's own
  optimizer when it brings one (ALLoRA, AltLoRA: ``protocol.method_optimizer``), else AdamW
  (``lr``, ``betas``, ``eps``, ``weight_decay``);
- the lr schedule: one multiplier for every group, ``Schedule.factor(step)`` (linear warmup
  over ``warmup`` steps, then ``cosine`` to 0 at ``total`` or ``constant``);
- the regularizer: ``loss = task_loss + regularization_loss(model)``, logged as ``train_loss``;
- the method hooks, driven by the runtime's ``AdapterHooks`` callback (which Lightning runs
  before the checkpoint callback): ``after_optimizer_step()`` is this module's own hook
  (an EMA teacher);
- the checkpoint contents: only what a resume needs that the config cannot rebuild:
  trainable tensors, the buffers of modules that own a trainable tensor, every tensor of
  the adapters (method state: LARGO's radius, LoCA's locations, LoRA-SB's factors) and of
  ``mirrors`` (an EMA copy such as ``{"teacher": "model"}`` keeps exactly the tensors whose
  counterpart in the source is kept); never the frozen base, nor a method's buffers that the
  base determines (``from_base``: Comp-LoRA's SVD basis, recomputed when the run rebuilds
  the model). Optimizer, scheduler, loop and
  data position are Lightning's and the sampler's as before.

Loading checks that every tensor the checkpoint must hold is there (one line naming the
first missing ones); a checkpoint that holds more (one written before this filtering) loads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import lightning as L
import torch
from torch import Tensor, nn

from lorakit.core import Host, SavedModule, protocol, regularization_loss

FSDP_WRAPPED = "_fsdp_wrapped_module"  # the module name FSDP units add (not in state dicts)


def _oversized(t: Tensor) -> bool:
    """Whether ``torch.save(t)`` would write more than ``t``: a view of a larger storage."""
    return t.untyped_storage().nbytes() > t.numel() * t.element_size()


def lr_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    """Multiplier of the base lr at ``step``: linear warmup ``(step + 1) / warmup`` for
    ``step < warmup``, then ``0.5 (1 + cos(pi p))`` with ``p = (step - warmup) / (total -
    warmup)`` (``cosine``) or 1 (``constant``)."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.5 * (1 + math.cos(math.pi * progress))


@dataclass(frozen=True)
class Schedule:
    """The lr schedule of a run (see ``lr_factor``)."""

    total: int = 1
    warmup: int = 0
    kind: str = "constant"  # or "cosine"

    def __post_init__(self):
        if self.kind not in ("cosine", "constant"):
            raise ValueError(f"lr schedule must be cosine or constant, got {self.kind!r}")

    def factor(self, step: int) -> float:
        return lr_factor(step, self.total, self.warmup, self.kind)


class AdapterModule(L.LightningModule):
    """Base of the pipelines' training modules (see the module docstring)."""

    mirrors: ClassVar[dict[str, str]] = {}  # copy prefix -> source prefix (EMA teachers)

    def __init__(
        self,
        model: nn.Module,
        lr: float,
        weight_decay: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        schedule: Schedule = Schedule(),
    ):
        super().__init__()
        self.model = model
        self.lr, self.weight_decay = float(lr), float(weight_decay)
        self.betas, self.eps = tuple(float(b) for b in betas), float(eps)
        self.schedule = schedule
        self.strict_loading = False  # checkpoints hold what trains; ``load_state_dict`` checks

    # --- what a pipeline supplies -------------------------------------------------------

    def task_loss(self, batch, batch_idx: int) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} must define task_loss(batch, batch_idx)")

    def batch_size(self, batch) -> int | None:
        """Items in ``batch`` (for logging); None lets Lightning infer it."""
        return None

    def param_groups(self) -> list[dict]:
        """Groups of trainable tensors (``params`` and options such as ``lr``)."""
        return [{"params": [p for p in self.model.parameters() if p.requires_grad]}]

    def after_optimizer_step(self) -> None:
        """Once per optimizer step, after the methods' hooks, before a checkpoint."""

    # --- loss -----------------------------------------------------------------------------

    def training_step(self, batch, batch_idx: int) -> Tensor:
        loss = self.task_loss(batch, batch_idx) + regularization_loss(self.model)
        self.log("train_loss", loss.detach(), prog_bar=True, batch_size=self.batch_size(batch))
        return loss

    # --- optimizer and schedule -------------------------------------------------------------

    def build_optimizer(self) -> torch.optim.Optimizer:
        groups = [g for g in self.param_groups() if g["params"]]
        if not groups:
            raise ValueError("nothing to train: the model has no trainable tensors")
        groups, _ = protocol.regroup([{"lr": self.lr, **g} for g in groups], self.model)
        kw = {"betas": self.betas, "eps": self.eps, "weight_decay": self.weight_decay}
        own = protocol.method_optimizer(self.model, lr=self.lr, params=groups, **kw)
        return own if own is not None else torch.optim.AdamW(groups, lr=self.lr, **kw)

    def configure_optimizers(self):
        opt = self.build_optimizer()
        schedule = self.schedule
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: schedule.factor(step))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def configure_gradient_clipping(
        self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None
    ) -> None:
        """Clip by norm; under FSDP through its root, whose norm spans every rank's shards
        (Lightning's FSDP precision plugin refuses to clip by norm)."""
        from .fsdp import fsdp_root

        root = fsdp_root(self.trainer.model)
        if root is not None and gradient_clip_val and gradient_clip_algorithm in (None, "norm"):
            root.clip_grad_norm_(gradient_clip_val)
            return
        super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

    # --- checkpoint contents ----------------------------------------------------------------

    def checkpoint_keys(self) -> set[str]:
        """Names of the state-dict entries a checkpoint holds (see the module docstring)."""
        adapter_ids = set()
        for m in self.modules():
            if isinstance(m, Host):
                adapter_ids |= {id(x) for x in m.adapters.modules()}
            elif isinstance(m, SavedModule):
                adapter_ids |= {id(x) for x in m.copies.modules()}
        keep = set()
        for name, m in self.named_modules():
            name = ".".join(p for p in name.split(".") if p != FSDP_WRAPPED)  # state-dict names
            prefix = f"{name}." if name else ""
            params = dict(m.named_parameters(recurse=False))
            trains = any(p.requires_grad for p in params.values())
            whole = id(m) in adapter_ids
            keep |= {prefix + n for n, p in params.items() if p.requires_grad or whole}
            if trains or whole:
                rebuilt = getattr(m, "from_base", ())  # a method's buffers the base determines
                keep |= {
                    prefix + n
                    for n, _ in m.named_buffers(recurse=False)
                    if n not in m._non_persistent_buffers_set and n not in rebuilt
                }
        for copy, source in self.mirrors.items():
            keep = {k for k in keep if not k.startswith(f"{copy}.")}
            keep |= {f"{copy}.{k[len(source) + 1:]}" for k in keep if k.startswith(f"{source}.")}
        return keep

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        keep = self.checkpoint_keys()
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in keep}
        for opt in checkpoint.get("optimizer_states", []):
            for state in opt.get("state", {}).values() if isinstance(opt, dict) else ():
                for k, v in state.items():  # a view into a larger buffer (FSDP's gathered
                    if isinstance(v, Tensor) and _oversized(v):  # state) saves the buffer
                        state[k] = v.clone()

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        missing = sorted(self.checkpoint_keys() - set(state_dict))
        if missing:
            raise ValueError(
                f"checkpoint does not fit this model ({len(missing)} tensors missing, e.g. "
                f"{missing[:3]}): resume with the same config, or delete checkpoints/"
            )
        return super().load_state_dict(state_dict, strict=False, assign=assign)
