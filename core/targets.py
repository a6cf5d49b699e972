"""Which layers a config adapts: target patterns and presets, matched against module names.

A pattern matches a module name equal to it, ending in ``.pattern``, or matching it as a
regex (full match); a preset name (``PRESETS``) stands for its patterns. Hosts and
saved-module wrappers stand for what they wrap (their insides are never targets).
Used by ``inject`` (adapter targets, ``modules_to_save``) and by methods that train full
weights of the same layers (GORP, the continual baselines: ``weights_of``).
"""

from __future__ import annotations

import re

from torch import nn

from .hosts import Host
from .layout import host_kind, skip_reason
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


def weights_of(
    model: nn.Module, targets, fused: dict | None = None, what: str = "targets"
) -> list[tuple[str, nn.Parameter]]:
    """``(name, W)`` of the weight matrices of the layers matched by ``targets`` (patterns
    or a preset, as ``inject``'s; of a wrapped layer, its base's): a Linear's or Conv2d's
    ``weight``; an attention's (MultiheadAttention, raw ``in_proj_weight``)
    ``in_proj_weight`` and ``out_proj.weight``. Also used for full fine-tuning of the same
    layers (the continual baselines)."""
    fused = {"qkv": 3} if fused is None else fused
    out: list[tuple[str, nn.Parameter]] = []
    for pattern in resolve_targets(targets):
        hits = []
        for lname, module in candidate_modules(model):
            if not lname or not name_matches(lname, pattern):
                continue
            kind = kind_of(lname, module, fused)
            if kind is None:
                continue
            base = module.base if isinstance(module, Host) else module
            prefix = f"{lname}.base." if isinstance(module, Host) else f"{lname}."
            keys = ("weight",)
            if kind in ("mha", "in_proj"):  # attention: its packed qkv and output matrices
                has_out = isinstance(getattr(base, "out_proj", None), nn.Linear)
                keys = ("in_proj_weight", "out_proj.weight") if has_out else ("in_proj_weight",)
            hits += [(prefix + k, base.get_parameter(k)) for k in keys]
        if not hits:
            raise ValueError(f"{what} pattern {pattern!r} matches no layer")
        out += [h for h in hits if all(h[1] is not p for _, p in out)]
    return out
