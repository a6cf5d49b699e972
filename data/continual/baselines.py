"""How each continual method trains a sequence: GORP and the baselines it is measured against.

Every method sees the same tasks, budget (steps per task) and learning-rate sweep; they
differ in what trains and what happens between tasks:

    lora        sequential LoRA: one adapter keeps training from task to task
    lora_merge  LoRA merged into the base weights after each task; a fresh adapter follows
    olora       O-LoRA: a new adapter per task, earlier ones frozen and still applied; the
                new ``A`` is pushed orthogonal to every earlier ``A`` by the penalty
                ``lambda_orth * sum_layers sum_{s<t} ||A_t A_s^T||_F^2`` (Wang et al. 2023)
    full        full fine-tuning of the target layers' weights (AdamW; no adapter)
    joint       one LoRA trained once on the union of all tasks, ``N x`` the per-task
                budget: the multi-task upper bound (one row in the matrix)
    gorp        GORP (``lorakit.core`` method ``gorp``): the optimizer comes from
                ``protocol.method_optimizer`` and ``protocol.end_task`` closes each task; its
                optimizer state (the basis ``Q`` of earlier tasks) carries to the next task
    drs_lora    DRS-LoRA / CoDyRA (``lorakit.core`` method ``drs_lora``): per-rank importance
                weights pruned by a proximal L1 step select each module's rank on the
                task's data; ``protocol.end_task`` merges the update and restarts the adapter

A ``Method`` object is stateless apart from its hyper-parameters: the model structure of
task ``t`` is rebuilt by replaying ``begin_task`` for tasks ``0..t`` (so a resumed run
loads the saved tensors into the same structure).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lorakit.core import inject, protocol
from lorakit.core.adapters import adapter_parameters, named_hosts, set_adapter
from lorakit.core.methods.base import kaiming_
from lorakit.core.methods.gorp import memory_report, weights_of
from lorakit.data.runtime import check_method_supported

from .names import ALL_OWN, METHODS, OWN_KEYS, check_method, core_method  # noqa: F401


def task_adapter(t: int) -> str:
    return f"task{t}"


class Method:
    """One continual method. ``make_config(method, hyper)`` is the domain's builder of a core
    adapter config on its target layers (``method`` is ``lora`` or ``gorp``)."""

    def __init__(self, name: str, hyper: dict, make_config):
        check_method(name)
        self.name, self.make_config = name, make_config
        hyper = dict(hyper)
        self.lambda_orth = float(hyper.pop("lambda_orth", 0.5))
        own = OWN_KEYS.get(name, ())
        self.lora_hyper = {k: v for k, v in hyper.items() if k not in ALL_OWN}
        self.gorp_hyper = {k: v for k, v in hyper.items() if k in own}
        self.config(0)  # validate the hyper-parameters now, before any work

    @property
    def per_task(self) -> bool:
        return self.name != "joint"

    def config(self, t: int):
        cfg = self.make_config(core_method(self.name), {**self.lora_hyper, **self.gorp_hyper})
        check_method_supported(cfg, runs_method_optimizer=True)  # this loop runs GORP's optimizer
        return cfg

    # ------------------------------------------------------------------ structure
    def begin_task(self, model: nn.Module, t: int) -> None:
        """Set the model up for task ``t`` (called for ``t = 0, 1, ...`` in order, also when
        a resumed run rebuilds the structure; the RNG is seeded by the caller)."""
        if self.name == "full":
            if t == 0:
                for p in model.parameters():
                    p.requires_grad_(False)
                for _, w in self.full_weights(model):
                    w.requires_grad_(True)
            return
        if self.name == "olora":
            inject(model, self.config(t), name=task_adapter(t))
            set_adapter(model, [task_adapter(s) for s in range(t + 1)])
            for s in range(t):  # earlier tasks' adapters keep acting but no longer train
                for p in adapter_parameters(model, task_adapter(s)):
                    p.requires_grad_(False)
            return
        if t == 0:
            inject(model, self.config(0))
        if self.name == "gorp":
            from lorakit.core.methods.gorp import full_weights

            for _, w in full_weights(model):  # trainable before a checkpoint is restored
                w.requires_grad_(True)

    def full_weights(self, model: nn.Module) -> list[tuple[str, nn.Parameter]]:
        cfg = self.config(0)
        return weights_of(model, cfg.targets, cfg.fused)

    # ------------------------------------------------------------------ training
    def optimizer(self, model: nn.Module, lr: float, weight_decay: float, carried: dict | None):
        """The task's optimizer. GORP: ``protocol.method_optimizer`` with the carried state
        (its task basis) loaded; the others: AdamW over the trainable parameters."""
        if self.name == "gorp":
            opt = protocol.method_optimizer(model, lr)
            if carried is not None:
                opt.load_state_dict(carried)
                for group in opt.param_groups:
                    group["lr"] = group["initial_lr"] = lr
            return opt
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise ValueError(f"{self.name}: nothing to train (check the adapter targets)")
        if self.name == "drs_lora":  # the importance weights get no weight decay
            return torch.optim.AdamW(protocol.param_groups(model, lr, weight_decay))
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)

    def penalty(self, model: nn.Module) -> Tensor | float:
        """O-LoRA's orthogonality loss between the newest adapter's ``A`` and earlier ones."""
        if self.name != "olora" or self.lambda_orth == 0:
            return 0.0
        total = 0.0
        for _, host in named_hosts(model):
            names = sorted(host.adapters, key=lambda n: int(n[len("task") :]))
            if len(names) < 2:
                continue
            new = host.adapters[names[-1]]
            for old in names[:-1]:
                for slot, m in new.items():
                    total = total + (m.A @ host.adapters[old][slot].A.detach().T).pow(2).sum()
        return self.lambda_orth * total

    @torch.no_grad()
    def end_task(self, model: nn.Module, optimizer) -> dict | None:
        """Close task ``t``; returns the optimizer state the next task starts from (GORP)."""
        if self.name == "gorp":
            protocol.end_task(model, optimizer)
            return optimizer.state_dict()
        if self.name == "drs_lora":
            protocol.end_task(model, optimizer)  # merge into the base, restart the adapter
            return None
        if self.name == "lora_merge":
            for _, host in named_hosts(model):
                for slot, m in host.adapters["default"].items():
                    w = host.slot_weight(slot)
                    w.add_(m.delta_weight().reshape(w.shape).to(w.dtype))
                    kaiming_(m.A)
                    m.B.zero_()
        return None


def optimizer_state_numel(optimizer) -> dict:
    """Numbers held in the optimizer's state (moments, GORP's ``P`` and ``Q``; step counters
    not counted), and for GORP also what Adam would hold for the same full weights."""
    held = sum(
        v.numel()
        for st in optimizer.state.values()
        for k, v in st.items()
        if isinstance(v, Tensor) and v.dim() > 0 and k != "step"
    )
    out = {"optimizer_state": int(held)}
    if hasattr(optimizer, "memory"):
        rep = memory_report(optimizer)
        out |= {"gorp_full_weight_state": rep["gorp"], "adam_full_weight_state": rep["adam"]}
    return out
