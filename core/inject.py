"""``make_config`` and ``inject``: find target layers by name, wrap them in hosts."""

from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass, field

from torch import nn

from .hosts import HOSTS, Host, host_kind, ops_for, slot_layout
from .methods import METHODS, AdapterConfig, SlotInfo

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


def make_config(name: str, **hyper) -> AdapterConfig:
    """The config dataclass of method ``name`` with ``hyper`` set; unknown names or
    fields raise ``ValueError`` listing the valid ones."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; valid methods: {', '.join(METHODS)}")
    cls = METHODS[name][0]
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
    """What ``inject`` wrapped; ``trainable`` counts shared tensors once."""

    method: str
    layers: list[LayerReport] = field(default_factory=list)
    trainable: int = 0
    total: int = 0

    @property
    def modules(self) -> list[str]:
        return [layer.name for layer in self.layers]

    def __str__(self) -> str:
        lines = [
            f"{self.method}: {len(self.layers)} layers, {self.trainable:,} trainable of "
            f"{self.total:,} parameters ({100 * self.trainable / max(self.total, 1):.3f}%)"
        ]
        for layer in self.layers:
            slots = ", ".join(f"{s} {o}x{i}" for s, (o, i) in layer.slots.items())
            lines.append(f"  {layer.name:<50} {layer.host:<10} {slots}  [{layer.trainable:,}]")
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


def _check_not_inside_mha(model: nn.Module, name: str) -> None:
    parent = name.rsplit(".", 1)[0] if "." in name else ""
    if name.endswith("out_proj") and isinstance(model.get_submodule(parent), nn.MultiheadAttention):
        raise ValueError(
            f"layer {name} is the out_proj of a MultiheadAttention, whose forward bypasses it; "
            f"target {parent!r} with 'o' in slices instead"
        )


def find_targets(model: nn.Module, targets: tuple[str, ...]) -> list[tuple[str, nn.Module, str]]:
    """``(name, module, host kind)`` of every adaptable module matched by ``targets``."""
    patterns = resolve_targets(targets)
    if not patterns:
        raise ValueError(
            "no targets given: set targets to module-name patterns or a preset "
            f"({', '.join(PRESETS)})"
        )
    found: dict[str, tuple[nn.Module, str]] = {}
    for pattern in patterns:
        hits = [
            (n, m, host_kind(n, m))
            for n, m in model.named_modules()
            if n and name_matches(n, pattern)
        ]
        hits = [h for h in hits if h[2] is not None]
        if not hits:
            examples = [n for n, m in model.named_modules() if n and host_kind(n, m)][:8]
            raise ValueError(
                f"target pattern {pattern!r} matches no adaptable layer "
                f"(Linear, fused qkv, MultiheadAttention, Conv2d); some layer names: {examples}"
            )
        for n, m, kind in hits:
            found[n] = (m, kind)
    names = sorted(found, key=list(dict(model.named_modules())).index)
    # a layer inside an attention we already adapt is reached through that host's slots
    mha = [n for n in names if found[n][1] == "mha"]
    names = [n for n in names if not any(n.startswith(p + ".") for p in mha)]
    for n in names:
        _check_not_inside_mha(model, n)
    return [(n, *found[n]) for n in names]


def _set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


def inject(
    model: nn.Module, config: AdapterConfig, *, names: list[str] | None = None
) -> InjectReport:
    """Wrap every module matching ``config.targets`` (or exactly ``names``) in place.

    Freezes the base; only adapter tensors stay trainable. Returns an ``InjectReport``.
    """
    config.validate()
    if any(isinstance(m, Host) for m in model.modules()):
        raise ValueError("model already carries a lorakit adapter; remove_adapter(model) first")
    method_cls = METHODS[config.method][1]
    if names is None:
        layers = find_targets(model, config.targets)
    else:
        layers = []
        for n in names:
            m = model.get_submodule(n)
            layers.append((n, m, host_kind(n, m)))
    for p in model.parameters():
        p.requires_grad_(False)
    context: dict = {}
    report = InjectReport(config.method)
    for name, module, kind in layers:
        layout = slot_layout(name, module, kind, config.slices)
        ops = ops_for(kind, module)
        host = HOSTS[kind](module, {})
        for slot, (d_out, d_in) in layout.items():
            weight = host.slot_weight(slot).detach().reshape(d_out, d_in).float()
            info = SlotInfo(
                f"{name}:{slot}" if slot != "weight" else name,
                d_out,
                d_in,
                weight,
                ops,
                kind,
                context,
            )
            host.adapters[slot] = method_cls(config, info).to(module_device(module))
        _set_submodule(model, name, host)
        count = sum(p.numel() for p in host.adapters.parameters())
        report.layers.append(LayerReport(name, kind, layout, count))
    for host in hosts(model):
        for p in host.adapters.parameters():
            p.requires_grad_(True)
    model._lorakit_config = config  # read by save_adapter
    report.trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)  # shared once
    report.total = sum(p.numel() for p in model.parameters())
    return report


def module_device(module: nn.Module):
    p = next(module.parameters(), None)
    return p.device if p is not None else "cpu"


def hosts(model: nn.Module) -> list[Host]:
    return [m for m in model.modules() if isinstance(m, Host)]


def named_hosts(model: nn.Module) -> list[tuple[str, Host]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, Host)]
