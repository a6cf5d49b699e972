"""``inject``: wrap the layers a config targets in hosts and attach the method's slots.

``inject`` can be called any number of times on one model, each time under its own
adapter name; see ``adapters.py`` for switching between them. Target matching lives in
``targets.py``, configs and the method registry in ``registry.py`` (``make_config``,
``list_methods`` and the target helpers are re-exported here for older imports).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field

from torch import nn

from .adapters import (
    active_adapters,
    adapter_names,
    adapter_parameter_ids,
    adapter_parameters,
    apply_trainability,
    named_adapted,
)
from .adapters import hosts as hosts
from .adapters import named_hosts as named_hosts
from .hosts import Host
from .layout import guard_fast_path, make_host, ops_for, slot_layout
from .method import AdapterConfig, SlotInfo
from .registry import list_methods, make_config, method_spec
from .saved_modules import SavedModule
from .targets import (
    PRESETS,
    candidate_modules,
    find_saved,
    find_targets,
    kind_of,
    name_matches,
    peft_pattern_matches,
    resolve_targets,
)

__all__ = [
    "PRESETS",
    "InjectReport",
    "LayerReport",
    "candidate_modules",
    "find_saved",
    "find_targets",
    "hosts",
    "inject",
    "kind_of",
    "layer_config",
    "list_methods",
    "make_config",
    "name_matches",
    "named_hosts",
    "peft_pattern_matches",
    "resolve_targets",
]


@dataclass
class LayerReport:
    name: str
    host: str
    slots: dict[str, tuple[int, int]]
    trainable: int


@dataclass
class InjectReport:
    """What ``inject`` wrapped; ``trainable`` counts shared tensors once. ``skipped`` and
    ``notes`` are lines about matched layers left alone and fast paths switched off."""

    method: str
    layers: list[LayerReport] = field(default_factory=list)
    trainable: int = 0
    total: int = 0
    name: str = "default"
    modules_to_save: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def modules(self) -> list[str]:
        return [layer.name for layer in self.layers]

    def __str__(self) -> str:
        lines = [
            f"{self.method} (adapter {self.name!r}): {len(self.layers)} layers, "
            f"{self.trainable:,} trainable of {self.total:,} parameters "
            f"({100 * self.trainable / max(self.total, 1):.3f}%)"
        ]
        for layer in self.layers:
            slots = ", ".join(f"{s} {o}x{i}" for s, (o, i) in layer.slots.items())
            lines.append(f"  {layer.name:<50} {layer.host:<10} {slots}  [{layer.trainable:,}]")
        lines += [f"  {n:<50} trained in full (modules_to_save)" for n in self.modules_to_save]
        lines += [f"  skipped {line}" for line in self.skipped]
        lines += [f"  note: {line}" for line in self.notes]
        return "\n".join(lines)


def layer_config(config: AdapterConfig, name: str) -> AdapterConfig:
    """``config`` with this layer's ``rank_pattern`` / ``alpha_pattern`` entries applied."""
    r = next((v for k, v in config.rank_pattern.items() if peft_pattern_matches(name, k)), None)
    a = next((v for k, v in config.alpha_pattern.items() if peft_pattern_matches(name, k)), None)
    if r is None and a is None:
        return config
    return dataclasses.replace(
        config, r=config.r if r is None else r, alpha=config.alpha if a is None else float(a)
    )


def _set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


def _check_name(model: nn.Module, name: str) -> None:
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_\-]+", name):
        raise ValueError(f"adapter name must be letters, digits, '_' or '-'; got {name!r}")
    if name in adapter_names(model):
        raise ValueError(
            f"model already has an adapter named {name!r}: pass another name, or "
            f"delete_adapter(model, {name!r}) first"
        )


def build_slots(config, method_cls, lname, host, kind, context) -> dict:
    """One method instance per slot of this layer (nothing is attached yet)."""
    base = host.base
    layout = slot_layout(lname, base, kind, config.slices, config.fused)
    cfg, ops = layer_config(config, lname), ops_for(kind, base)
    slots = {}
    for slot, (d_out, d_in) in layout.items():
        weight = host.slot_weight(slot).detach().reshape(d_out, d_in).float()
        sname = f"{lname}:{slot}" if slot != "weight" else lname
        info = SlotInfo(sname, d_out, d_in, weight, ops, kind, context)
        slots[slot] = method_cls(cfg, info).to(module_device(base))
    return slots


def inject(
    model: nn.Module,
    config: AdapterConfig,
    name: str = "default",
    *,
    names: list[str] | None = None,
    saved: list[str] | None = None,
) -> InjectReport:
    """Add adapter ``name``: wrap every module matching ``config.targets`` (or exactly
    ``names``) in place, and wrap ``config.modules_to_save`` (or exactly ``saved``).

    The base is frozen. The first adapter of a model becomes active (and trainable);
    later ones are added inactive: ``set_adapter(model, name)`` switches. Returns an
    ``InjectReport``.
    """
    config.validate()
    _check_name(model, name)
    method_cls = method_spec(config.method).layer
    skipped: list[str] = []
    if names is None:
        layers, skipped = find_targets(model, config.targets, config.fused)
    else:
        layers = [
            (n, m, kind_of(n, m, config.fused)) for n in names for m in [model.get_submodule(n)]
        ]
    if saved is None:
        saved = find_saved(model, config.modules_to_save, layers)
    merged = [n for n, m, _ in layers if isinstance(m, Host) and m.merged]
    if merged:
        raise ValueError(f"layer {merged[0]} has a merged adapter: unmerge(model) first")
    active = active_adapters(model) if adapter_names(model) else [name]
    context: dict = {}
    built = []
    for lname, module, kind in layers:  # build everything first: a bad layer changes nothing
        host = module if isinstance(module, Host) else make_host(kind, lname, module, config.fused)
        built.append(
            (lname, module, host, kind, build_slots(config, method_cls, lname, host, kind, context))
        )
    adapter_ids = adapter_parameter_ids(model)
    for p in model.parameters():
        if id(p) not in adapter_ids:
            p.requires_grad_(False)
    report = InjectReport(config.method, name=name, skipped=skipped)
    for lname, module, host, kind, slots in built:
        for m in slots.values():
            m.adapter_name = name
        host.add(name, slots)
        host.configs[name] = config
        host.adapters[name].train(host.base.training)
        if host is not module:
            _set_submodule(model, lname, host)
        report.notes += guard_fast_path(model, lname)
        count = sum(p.numel() for p in host.adapters[name].parameters())
        shapes = {s: (m.d_out, m.d_in) for s, m in slots.items()}
        report.layers.append(LayerReport(lname, kind, shapes, count))
    for sname in saved:
        module = model.get_submodule(sname)
        wrapper = module if isinstance(module, SavedModule) else SavedModule(module)
        wrapper.add(name).train(module.training)
        if wrapper is not module:
            _set_submodule(model, sname, wrapper)
        report.modules_to_save.append(sname)
    for _, m in named_adapted(model):
        m.active_names = list(active)
    apply_trainability(model)
    report.trainable = sum(p.numel() for p in adapter_parameters(model, name))
    report.total = sum(p.numel() for p in model.parameters())
    return report


def module_device(module: nn.Module):
    p = next(module.parameters(), None)
    return p.device if p is not None else "cpu"
