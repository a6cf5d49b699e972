"""``make_config`` and ``inject``: find target layers by name, wrap them in hosts.

``inject`` can be called any number of times on one model, each time under its own
adapter name; see ``adapters.py`` for switching between them.
"""

from __future__ import annotations

import dataclasses
import re
import typing
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
from .layout import guard_fast_path, host_kind, make_host, ops_for, skip_reason, slot_layout
from .methods import METHODS, AdapterConfig, SlotInfo
from .saved_modules import SavedModule

# Named target sets for the architectures lorakit ships pipelines for (regex, full match).
PRESETS: dict[str, tuple[str, ...]] = {
    "clip-qkv": (r"(visual\.)?transformer\.resblocks\.\d+\.attn",),
    "clip-vision-qkv": (r"visual\.transformer\.resblocks\.\d+\.attn",),
    "clip-text-qkv": (r"transformer\.resblocks\.\d+\.attn",),
    "clip-mlp": (r"(visual\.)?transformer\.resblocks\.\d+\.mlp\.(c_fc|c_proj)",),
    "sam-qkv": (r"image_encoder\.blocks\.\d+\.attn\.qkv",),
    "sam-decoder": (r"mask_decoder\.transformer\..*\.(q_proj|k_proj|v_proj|out_proj)",),
    "whisper-attn": (r"(encoder|decoder)\.blocks\.\d+\.(attn|cross_attn)\.(query|key|value|out)",),
    "whisper-mlp": (r"(encoder|decoder)\.blocks\.\d+\.mlp\.(0|2)",),
}


def list_methods() -> list[str]:
    return list(METHODS)


def _coerce(cls: type, name: str, value):
    """YAML/JSON give lists where the dataclass wants tuples."""
    hint = typing.get_type_hints(cls).get(name)
    if isinstance(value, list) and "tuple" in str(hint):
        return tuple(value)
    if isinstance(value, str) and name == "targets":
        return (value,)
    return value


# Hugging Face PEFT's LoraConfig field names, accepted as aliases of lorakit's.
PEFT_ALIASES = {
    "target_modules": "targets",
    "lora_alpha": "alpha",
    "lora_dropout": "dropout",
    "use_rslora": "rslora",
}


def _peft_aliases(name: str, hyper: dict) -> dict:
    out = {}
    for key, value in hyper.items():
        own = PEFT_ALIASES.get(key, key)
        if own in out:
            raise ValueError(f"{name}: {key!r} and {own!r} name the same field; give one")
        if own == "targets" and isinstance(value, str):
            value = (value,)
        out[own] = value
    return out


def make_config(name: str, **hyper) -> AdapterConfig:
    """The config dataclass of method ``name`` with ``hyper`` set; unknown names or
    fields raise ``ValueError`` listing the valid ones. PEFT's names (``target_modules``,
    ``lora_alpha``, ``lora_dropout``, ``use_rslora``) are accepted as aliases."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; valid methods: {', '.join(METHODS)}")
    cls = METHODS[name][0]
    hyper = _peft_aliases(name, hyper)
    valid = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in hyper if k not in valid]
    if unknown:
        raise ValueError(f"{name}: unknown field(s) {unknown}; valid fields: {', '.join(valid)}")
    cfg = cls(**{k: _coerce(cls, k, v) for k, v in hyper.items()})
    cfg.validate()
    return cfg


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


def resolve_targets(targets: tuple[str, ...]) -> tuple[str, ...]:
    out: list[str] = []
    for t in targets:
        out.extend(PRESETS.get(t, (t,)))
    return tuple(out)


def name_matches(name: str, pattern: str) -> bool:
    if name == pattern or name.endswith("." + pattern):
        return True
    try:
        return re.fullmatch(pattern, name) is not None
    except re.error:
        return False


def peft_pattern_matches(name: str, pattern: str) -> bool:
    """PEFT's rule for rank_pattern / alpha_pattern keys: the name ends in the pattern."""
    try:
        return re.match(rf"(.*\.)?({pattern})$", name) is not None
    except re.error:
        return name == pattern or name.endswith("." + pattern)


def _check_not_inside_mha(model: nn.Module, name: str) -> None:
    parent = name.rsplit(".", 1)[0] if "." in name else ""
    if name.endswith("out_proj") and isinstance(model.get_submodule(parent), nn.MultiheadAttention):
        raise ValueError(
            f"layer {name} is the out_proj of a MultiheadAttention, whose forward bypasses it; "
            f"target {parent!r} with 'o' in slices instead"
        )


def candidate_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Named modules, with hosts / saved-module wrappers standing for what they wrap
    (their insides, adapters included, are never targets)."""
    out, inside = [], []
    for n, m in model.named_modules():
        if not n or any(n.startswith(p + ".") for p in inside):
            continue
        if isinstance(m, (Host, SavedModule)):
            inside.append(n)
        out.append((n, m))
    return out


def kind_of(name: str, module: nn.Module, fused: dict[str, int]) -> str | None:
    if isinstance(module, Host):
        return module.kind
    if isinstance(module, SavedModule):
        return None
    return host_kind(name, module, fused)


def find_targets(
    model: nn.Module, targets: tuple[str, ...], fused: dict[str, int] | None = None
) -> tuple[list[tuple[str, nn.Module, str]], list[str]]:
    """``(name, module, host kind)`` of every adaptable module matched by ``targets``, and
    report lines for matched layers that are skipped (grouped convolutions)."""
    fused = {"qkv": 3} if fused is None else fused
    patterns = resolve_targets(targets)
    if not patterns:
        raise ValueError(
            "no targets given: set targets to module-name patterns or a preset "
            f"({', '.join(PRESETS)})"
        )
    cands = candidate_modules(model)
    found: dict[str, tuple[nn.Module, str]] = {}
    skipped: dict[str, str] = {}
    for pattern in patterns:
        hits = [(n, m) for n, m in cands if name_matches(n, pattern)]
        hits = [(n, m, kind_of(n, m, fused)) for n, m in hits]
        hits = [h for h in hits if h[2] is not None]
        if not hits:
            examples = [n for n, m in cands if kind_of(n, m, fused)][:8]
            raise ValueError(
                f"target pattern {pattern!r} matches no adaptable layer "
                f"(Linear, fused qkv, attention, Conv2d); some layer names: {examples}"
            )
        for n, m, kind in hits:
            why = None if isinstance(m, Host) else skip_reason(kind, m)
            if why:
                skipped[n] = f"{n}: {why}"
            else:
                found[n] = (m, kind)
    if not found:
        raise ValueError(
            f"targets {list(targets)} match no layer lorakit can adapt: "
            + "; ".join(skipped.values())
        )
    order = [n for n, _ in cands]
    names = sorted(found, key=order.index)
    # a layer inside an attention we already adapt is reached through that host's slots
    att = [n for n in names if found[n][1] in ("mha", "in_proj")]
    names = [n for n in names if not any(n.startswith(p + ".") for p in att)]
    for n in names:
        _check_not_inside_mha(model, n)
    return [(n, *found[n]) for n in names], list(skipped.values())


def find_saved(model: nn.Module, patterns: tuple[str, ...], layers: list) -> list[str]:
    """Names of the ``modules_to_save`` modules; never a target or a target's ancestor."""
    out: list[str] = []
    targets = [n for n, _, _ in layers]
    for pattern in patterns:
        hits = [
            n
            for n, m in candidate_modules(model)
            if name_matches(n, pattern) and not isinstance(m, Host)
        ]
        if not hits:
            raise ValueError(f"modules_to_save pattern {pattern!r} matches no module")
        for n in hits:
            clash = [t for t in targets if t == n or t.startswith(n + ".")]
            if clash or any(isinstance(m, Host) for m in model.get_submodule(n).modules()):
                raise ValueError(
                    f"module {n} is both saved in full and adapted ({(clash or [n])[0]}); "
                    "drop it from targets or from modules_to_save"
                )
            if n not in out:
                out.append(n)
    return out


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
    method_cls = METHODS[config.method][1]
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
