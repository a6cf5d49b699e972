"""Which host adapts a module, its slots and their shapes, and what ``inject`` skips.

Fused projections are declared, never guessed: a Linear is fused only when the last part
of its name is a key of the config's ``fused`` map (``{"qkv": 3}`` by default; add
``"qkv_proj": 3``, ``"Wqkv": 3``, ``"c_attn": 3`` or ``"kv": 2`` for other models).
"""

from __future__ import annotations

from torch import nn

from .hosts import FUSED_SLICES, Conv2dHost, FusedHost, Host, LinearHost
from .inproj_host import InProjHost
from .method import ConvOps, HostOps
from .mha_host import MHAHost

DEFAULT_FUSED = {"qkv": 3}

HOSTS: dict[str, type[Host]] = {
    "linear": LinearHost,
    "fused_qkv": FusedHost,
    "mha": MHAHost,
    "in_proj": InProjHost,
    "conv2d": Conv2dHost,
}


def has_raw_in_proj(module: nn.Module) -> bool:
    w = module._parameters.get("in_proj_weight")
    return w is not None and w.dim() == 2 and w.shape[0] == 3 * w.shape[1]


def host_kind(name: str, module: nn.Module, fused: dict[str, int] | None = None) -> str | None:
    """Which host adapts this module, or None when it is not an adaptable layer."""
    if isinstance(module, Host):
        return None
    if isinstance(module, nn.MultiheadAttention):
        return "mha"
    if isinstance(module, nn.Conv2d):
        return "conv2d"
    if isinstance(module, nn.Linear):
        n = (DEFAULT_FUSED if fused is None else fused).get(name.rsplit(".", 1)[-1])
        if n is None:
            return "linear"
        if module.out_features % n:
            raise ValueError(
                f"layer {name} is declared fused with {n} slices, but its {module.out_features} "
                f"outputs do not split into {n} equal parts"
            )
        return "fused_qkv"
    if has_raw_in_proj(module):
        return "in_proj"
    return None


def n_slices(name: str, fused: dict[str, int] | None) -> int:
    return (DEFAULT_FUSED if fused is None else fused).get(name.rsplit(".", 1)[-1], 3)


def make_host(kind: str, name: str, module: nn.Module, fused: dict[str, int] | None) -> Host:
    if kind == "fused_qkv":
        return FusedHost(module, n_slices(name, fused))
    return HOSTS[kind](module)


def skip_reason(kind: str, module: nn.Module) -> str | None:
    """Why a matched layer is left alone (reported, never a failed inject)."""
    if kind == "conv2d" and module.groups != 1:
        return f"grouped convolution (groups={module.groups}) not adapted"
    if kind == "conv2d" and module.padding_mode != "zeros":
        return f"padding_mode={module.padding_mode!r} not adapted"
    return None


def slot_layout(
    name: str,
    module: nn.Module,
    kind: str,
    slices: tuple[str, ...],
    fused: dict[str, int] | None = None,
) -> dict[str, tuple[int, int]]:
    """The slots a host of this kind would adapt, with their ``(d_out, d_in)``."""
    if kind in ("linear", "conv2d"):
        w = module.weight
        return {"weight": (w.shape[0], w[0].numel())}
    if kind == "fused_qkv":
        names = FUSED_SLICES[n_slices(name, fused)]
        chosen = [s for s in names if s in slices]
        if not chosen:
            raise ValueError(f"layer {name}: a fused layer needs one of {names} in slices")
        d = module.out_features // len(names)
        return {s: (d, module.in_features) for s in chosen}
    if kind == "mha":
        if not module._qkv_same_embed_dim or module.bias_k is not None or module.add_zero_attn:
            raise ValueError(
                f"layer {name}: MultiheadAttention with kdim/vdim != embed_dim, bias_k/bias_v or "
                "add_zero_attn is not supported"
            )
        e = module.embed_dim
        return {s: (e, e) for s in ("q", "k", "v", "o") if s in slices}
    if kind == "in_proj":
        e = module.in_proj_weight.shape[1]
        out = {s: (e, e) for s in ("q", "k", "v") if s in slices}
        o = getattr(module, "out_proj", None)
        if "o" in slices and isinstance(o, nn.Linear):
            out["o"] = (o.out_features, o.in_features)
        if not out:
            raise ValueError(f"layer {name}: no q, k, v (or o) slice to adapt")
        return out
    raise ValueError(f"layer {name}: {type(module).__name__} cannot host an adapter")


def ops_for(kind: str, module: nn.Module) -> HostOps:
    return ConvOps(module) if kind == "conv2d" else HostOps()


def _noop_pre_hook(module, args):
    return None


def guard_fast_path(model: nn.Module, host_name: str) -> list[str]:
    """Keep PyTorch's fused transformer fast path from bypassing a host.

    ``nn.TransformerEncoderLayer`` in eval mode calls one fused kernel with the raw
    weights, skipping unmerged adapters; it takes the slow path whenever a forward hook is
    attached, so one no-op pre-hook goes on each enclosing layer. ``nn.TransformerEncoder``
    would also pack inputs into nested tensors: switched off. Returns report lines.
    """
    lines = []
    parts = host_name.split(".")
    for i in range(len(parts)):
        path = ".".join(parts[:i])
        m = model.get_submodule(path) if path else model
        if isinstance(m, nn.TransformerEncoderLayer) and not getattr(m, "_lorakit_guard", False):
            m.register_forward_pre_hook(_noop_pre_hook)
            m._lorakit_guard = True
            lines.append(f"{path or '<model>'}: TransformerEncoderLayer fast path disabled")
        if isinstance(m, nn.TransformerEncoder) and m.use_nested_tensor:
            m.use_nested_tensor = False
            lines.append(f"{path or '<model>'}: TransformerEncoder nested-tensor path disabled")
    return lines
