"""GORP (arXiv 2507.02503): LoRA plus full weights trained in one low-rank gradient space.

lorakit's reading (METHODS.md, "GORP"; the paper publishes no code). Each target slot gets
a LoRA adapter (``delta(x) = s B A x``, as ``lora``); in addition the full weights ``W`` of
the layers ``full_targets`` (default: the target layers) are trained by ``GORPAdam``
(``lorakit.core.gorp_optim``): GaLore-style projected Adam, ``W <- W - lr P adam(P^T G)``,
``P`` the top-``r_g`` left singular vectors of ``G`` refreshed every ``T`` steps, moments
``r_g x n``. ``end_task`` grows an orthonormal basis ``Q`` of earlier tasks' gradient space
from the lifted first moments (energy ``energy_cl``); later ``P`` avoids ``Q``. With
``merge_lora_per_task`` the finished task's LoRA is merged into ``W`` and a fresh one starts.

Training goes through the protocol: ``protocol.method_optimizer(model, lr)`` builds the
optimizer (and makes the full weights trainable; ``name=`` picks the gorp adapter when
there are several, default the active one); ``protocol.end_task(model, optimizer)``
closes that adapter's task. The single-task pipelines refuse gorp (they build their own
optimizer); the continual protocol (``lorakit train continual``) runs it. The optimizer's ``state_dict`` holds ``P``, ``Q``, moments and steps.

Contract: the adapter itself keeps the shared contract (it is LoRA). But GORP also changes
the base weights, so once its optimizer has stepped, ``disable`` runs the *trained* base
(not the original ``W0``), ``unmerge`` restores the trained ``W``, and ``save_adapter``
holds only ``A``, ``B``: keep the model's full weights too (its ``state_dict``).

Trainable per slot: ``r * (d_in + d_out)``, plus every full weight (``m n``); optimizer
state ``2 r_g n`` per full weight instead of Adam's ``2 m n`` (``memory_report``).
Defaults: r=8, alpha=8, r_g=0 (meaning ``4 r``), T=200, energy_cl=0.9, merge on.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..adapters import adapter_parameters, named_hosts
from ..gorp_optim import GORPAdam
from ..targets import weights_of
from .base import kaiming_
from .lora import LoRA, LoRAConfig

__all__ = ["GORP", "GORPConfig", "full_weights", "make_optimizer", "memory_report", "weights_of"]


@dataclass
class GORPConfig(LoRAConfig):
    """full_targets: layers whose full weights train (patterns as ``targets``; empty means
    the target layers). r_g: projection rank (0 means ``4 r``). T: steps between refreshes
    of ``P``. energy_cl: energy fraction kept per task in ``Q``. merge_lora_per_task: merge
    the adapter into ``W`` after each task and start a fresh one."""

    full_targets: tuple[str, ...] = ()
    r_g: int = 0
    T: int = 200
    energy_cl: float = 0.9
    merge_lora_per_task: bool = True

    method = "gorp"

    def rank_g(self) -> int:
        return self.r_g or 4 * self.r

    def validate(self) -> None:
        super().validate()
        if not isinstance(self.r_g, int) or self.r_g < 0:
            raise ValueError(f"gorp: r_g must be an integer >= 0 (0: 4 r), got {self.r_g!r}")
        if not isinstance(self.T, int) or self.T < 1:
            raise ValueError(f"gorp: T must be a positive integer, got {self.T!r}")
        if not 0 < self.energy_cl <= 1:
            raise ValueError(f"gorp: energy_cl must be in (0, 1], got {self.energy_cl!r}")


def gorp_config(model: nn.Module, name: str | None = None) -> tuple[str, GORPConfig]:
    """``(adapter name, config)`` of the model's gorp adapter: ``name`` if given, else the
    only gorp adapter, or the only active one when there are several."""
    found: dict[str, GORPConfig] = {}
    for _, host in named_hosts(model):
        found.update((a, c) for a, c in host.configs.items() if isinstance(c, GORPConfig))
    if not found:
        raise ValueError("model carries no gorp adapter: inject a gorp config first")
    if name is not None:
        if name not in found:
            raise ValueError(f"no gorp adapter named {name!r}; gorp adapters: {sorted(found)}")
        return name, found[name]
    if len(found) == 1:
        return next(iter(found.items()))
    active = {a for _, h in named_hosts(model) for a in h.active_names} & set(found)
    if len(active) != 1:
        raise ValueError(
            f"the model holds several gorp adapters {sorted(found)}: pass name= to pick one"
        )
    (a,) = active
    return a, found[a]


def full_weights(model: nn.Module, name: str | None = None) -> list[tuple[str, nn.Parameter]]:
    """``(name, W)`` of every full weight GORP trains in ``model``: the matrices of the
    layers matched by ``full_targets`` (default: the adapter's targets), see ``weights_of``.
    ``name`` picks the gorp adapter (see ``gorp_config``)."""
    _, cfg = gorp_config(model, name)
    return weights_of(model, cfg.full_targets or cfg.targets, cfg.fused, what="gorp: full_targets")


def make_optimizer(
    model: nn.Module,
    lr: float,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    name: str | None = None,
    **unknown,
) -> torch.optim.Optimizer:
    """``GORPAdam`` over the model's full weights (made trainable here) and the gorp
    adapter's LoRA tensors; ``r_g``, ``T`` and ``energy_cl`` come from its config.
    ``name`` picks the gorp adapter (default: the only one, or the active one)."""
    if unknown:
        raise ValueError(
            f"gorp optimizer: unknown option(s) {sorted(unknown)}; use betas, eps, name"
        )
    name, cfg = gorp_config(model, name)
    full = full_weights(model, name)
    for _, w in full:
        w.requires_grad_(True)
    ids = {id(w) for _, w in full}
    lora = [p for p in adapter_parameters(model, name) if id(p) not in ids]
    opt = GORPAdam(
        [w for _, w in full], lora, lr=lr, betas=betas, eps=eps, r_g=cfg.rank_g(), T=cfg.T,
        energy_cl=cfg.energy_cl,
    )  # fmt: skip
    opt.adapter_name = name  # end_task closes this adapter's task
    return opt


@torch.no_grad()
def end_task(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[int, int]:
    """Close a task: grow ``Q`` (optimizer), then merge each LoRA of the optimizer's gorp
    adapter into its base weight and re-initialise it (``A`` Kaiming, ``B = 0``) when
    ``merge_lora_per_task``."""
    if not isinstance(optimizer, GORPAdam):
        raise ValueError("gorp end_task needs the optimizer from protocol.method_optimizer")
    name, cfg = gorp_config(model, optimizer.adapter_name)
    hosts = [h for _, h in named_hosts(model) if name in h.adapters]
    if cfg.merge_lora_per_task and any(h.merged for h in hosts):
        raise ValueError("gorp end_task: unmerge the model first (the adapter is merged)")
    sizes = optimizer.end_task(reset_lora=cfg.merge_lora_per_task)
    if cfg.merge_lora_per_task:
        for host in hosts:
            for slot, m in host.adapters[name].items():
                w = host.slot_weight(slot)
                w.add_(m.delta_weight().reshape(w.shape).to(w.dtype))
                m.reset()
    return sizes


def memory_report(optimizer: torch.optim.Optimizer) -> dict:
    """Optimizer state of the full weights, in numbers: GORP (moments, ``P``, ``Q``) against
    Adam's ``2 m n``; ``rows`` per weight. Call it any time (before the first step too)."""
    rows = optimizer.memory()
    total = {k: sum(r[k] for r in rows) for k in ("moments", "projection", "basis", "adam")}
    return {"rows": rows, **total, "gorp": total["moments"] + total["projection"] + total["basis"]}


class GORP(LoRA):
    name = "gorp"
    formula = "r*(d_in + d_out) per layer + full weights of full_targets (m*n each)"
    trains_base_weights = True  # contract.py: the base changes under GORPAdam
    full_weights = staticmethod(full_weights)
    make_optimizer = staticmethod(make_optimizer)
    end_task = staticmethod(end_task)

    @torch.no_grad()
    def reset(self) -> None:
        """A fresh adapter (the model's output is unchanged by it)."""
        kaiming_(self.A)
        self.B.zero_()

    def extra_repr(self) -> str:
        return super().extra_repr() + f", r_g={self.cfg.rank_g()}, T={self.cfg.T}"
