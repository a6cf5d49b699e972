"""Whole-model quantization: ``quantize``, ``dequantize``, bytes, save / load, merge.

    from lorakit.core import quantize, inject, make_config
    report = quantize(model, bits=4, scheme="nf", group_size=64, targets=("whisper-attn",))
    inject(model, make_config("qlora", r=8, targets=("whisper-attn",)))     # QLoRA
    quantize(fp_model, bits=3, adapter=make_config("loftq", r=16, targets=...))  # absorbs Q error

Quantize a model before injecting adapters (a model that already has adapters is refused).
With ``adapter=`` a quantization-aware method (``loftq``, ``lq_lora``, ``qwha``) sees each
layer's float weight once, chooses the codes and its own initial tensors so that
``Q + dW`` is close to ``W``, and is injected with those values; other methods are
injected as usual (their fresh adapter leaves the quantized model unchanged).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from ..adapters import adapter_names, named_adapted, named_hosts
from ..hosts import Host
from ..inject import name_matches, resolve_targets
from .absorb import quantize_with_adapter
from .backends import check_backend
from .codes import QTensor, check_spec, stored_bits
from .layer import QuantLayer, QuantLinear, set_module

FORMAT = "lorakit-quantized"


@dataclass
class QuantReport:
    """What ``quantize`` did: per layer bits, bytes and relative error; totals."""

    scheme: str
    group_size: int
    layers: list[QuantLayer] = field(default_factory=list)
    adapter: object = None  # the InjectReport when ``adapter=`` was given
    notes: list[str] = field(default_factory=list)

    @property
    def quantized_bytes(self) -> int:
        return sum(layer.nbytes for layer in self.layers)

    @property
    def fp32_bytes(self) -> int:
        return sum(4 * layer.shape[0] * layer.shape[1] for layer in self.layers)

    def __str__(self) -> str:
        lines = [
            f"quantized {len(self.layers)} layers ({self.scheme}, group {self.group_size}): "
            f"{self.quantized_bytes:,} bytes vs {self.fp32_bytes:,} fp32 "
            f"({self.quantized_bytes / max(self.fp32_bytes, 1):.3f}x)"
        ]
        for q in self.layers:
            extra = "" if q.rel_error_adapted is None else f" -> {q.rel_error_adapted:.4f} adapted"
            lines.append(f"  {q.name:<50} {q.bits}-bit rel. error {q.rel_error:.4f}{extra}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def quant_targets(model: nn.Module, targets) -> list[tuple[str, nn.Linear]]:
    """``(name, Linear)`` of the layers ``targets`` names (all Linears when empty)."""
    patterns = resolve_targets(tuple(targets or ()))
    found = []
    for name, m in model.named_modules():
        if not isinstance(m, nn.Linear) or isinstance(m, QuantLinear):
            continue
        if not patterns or any(name_matches(name, p) for p in patterns):
            found.append((name, m))
    if not found:
        raise ValueError(
            f"quantize: targets {list(targets or ())} match no nn.Linear layer "
            "(only Linear layers are quantized)"
        )
    return found


def quantize(
    model: nn.Module,
    bits: int = 4,
    scheme: str = "nf",
    group_size: int = 64,
    targets=(),
    adapter=None,
    adapter_name: str = "default",
    fisher: dict | None = None,
    backend: str = "auto",
) -> QuantReport:
    """Replace the target Linear layers by ``QuantLinear`` (in place); see the module doc.

    ``targets``: name patterns or presets as in ``make_config`` (empty: every Linear).
    ``adapter``: an ``AdapterConfig`` injected (under ``adapter_name``) right after; a method
    with an ``absorb`` classmethod initialises itself from the float weights.
    ``fisher``: ``{layer name: diagonal Fisher of its weight}`` (``fisher_diagonal``) for a
    method that weights its decomposition by it (``lq_lora`` with ``fisher: true``).
    ``backend``: the matmul kernel (``auto``, ``torch``, ``bitsandbytes``; ``backends.py``)."""
    check_spec(bits, scheme, group_size)
    check_backend(backend)
    if adapter_names(model):
        raise ValueError(
            "quantize: the model already has adapters "
            f"{adapter_names(model)}; quantize the base first, then inject"
        )
    layers = quant_targets(model, targets)
    report = QuantReport(scheme, group_size)
    if adapter is not None:

        quantize_with_adapter(model, layers, bits, scheme, group_size, adapter,
                              adapter_name, report, fisher)
        set_backend(model, backend)
        return report
    if fisher is not None:
        raise ValueError("quantize: fisher= needs adapter= (a method that reads it: lq_lora)")
    for name, lin in layers:
        w = lin.weight.detach().float()
        q = QuantLinear.from_linear(lin, bits, scheme, group_size).to(w.device)
        q.train(lin.training)
        report.layers.append(layer_entry(name, w, q))
        set_module(model, name, q)
    set_backend(model, backend)
    return report


def set_backend(model: nn.Module, backend: str) -> None:
    """Every quantized layer of ``model`` multiplies with ``backend`` (``backends.py``)."""
    check_backend(backend)
    for m in model.modules():
        if isinstance(m, QuantLinear):
            m.backend = backend


def layer_entry(name: str, w: torch.Tensor, q: QuantLinear) -> QuantLayer:
    err = float(torch.linalg.norm(w - q.weight) / torch.linalg.norm(w).clamp_min(1e-12))
    return QuantLayer(name, tuple(w.shape), q.bits, q.nbytes(), err)


def quant_layers(model: nn.Module) -> list[tuple[str, QuantLinear]]:
    """``(name, QuantLinear)`` by the layer's name in the base model (hosts see-through)."""
    return [(base_name(model, n), m) for n, m in model.named_modules()
            if isinstance(m, QuantLinear)]


def base_name(model: nn.Module, name: str) -> str:
    """A module name with lorakit wrappers (``<host>.base``, ``<saved>.original``) removed."""
    for path, m in sorted(named_adapted(model), key=lambda t: -len(t[0])):
        inner = f"{path}.base" if isinstance(m, Host) else f"{path}.original"
        if name == inner or name.startswith(inner + "."):
            name = path + name[len(inner):]
    return name


def dequantize(model: nn.Module) -> nn.Module:
    """Replace every ``QuantLinear`` (hosts' bases too) by a float32 ``nn.Linear`` holding
    its dequantized weight (the merged float copy when merged); returns ``model``."""
    for name, m in list(model.named_modules()):
        if isinstance(m, QuantLinear):
            lin = nn.Linear(m.in_features, m.out_features, m.bias is not None,
                            device=m.packed.device)
            with torch.no_grad():
                lin.weight.copy_(m.weight)
                if m.bias is not None:
                    lin.bias.copy_(m.bias)
            lin.requires_grad_(False).train(m.training)
            set_module(model, name, lin)
    return model


def model_bytes(model: nn.Module, float_bytes: int = 4) -> dict:
    """Bytes of the base model: quantized layers as stored, every other parameter and
    buffer at ``float_bytes`` per element (4: fp32, 2: bf16), adapters excluded; and the
    same model with every weight at ``float_bytes`` (``dense``)."""
    adapter_ids = {id(t) for _, h in named_hosts(model) for t in h.adapters.parameters()}
    adapter_ids |= {id(t) for _, h in named_hosts(model) for t in h.adapters.buffers()}
    quant, other, dense = 0, 0, 0
    for m in model.modules():
        if isinstance(m, QuantLinear):
            quant += m.nbytes()
            dense += m.in_features * m.out_features * float_bytes
    skip = {id(t) for m in model.modules() if isinstance(m, QuantLinear)
            for t in (m.packed, m.scales, m.zeros, m.table) if t is not None}
    seen = set()
    for t in list(model.parameters()) + list(model.buffers()):
        if id(t) in seen or id(t) in skip or id(t) in adapter_ids:
            continue
        seen.add(id(t))
        nb = t.numel() * (float_bytes if t.is_floating_point() else t.element_size())
        other += nb
        dense += nb
    return {"quantized_layers": quant, "other": other, "total": quant + other,
            "dense_total": dense, "ratio": (quant + other) / max(dense, 1)}


def base_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The base model's tensors (adapters left out, wrapper names removed)."""
    sd = model.state_dict()
    drop = [f"{p}.adapters." if isinstance(m, Host) else f"{p}.copies."
            for p, m in named_adapted(model)]
    out = {}
    for key, t in sd.items():
        if any(key.startswith(d) for d in drop):
            continue
        owner, _, leaf = key.rpartition(".")
        out[f"{base_name(model, owner)}.{leaf}" if owner else leaf] = t  # top-level: no dot
    return out


def save_quantized(model: nn.Module, path: str | os.PathLike) -> Path:
    """Write the quantized base (codes, scales, every other base tensor) to one safetensors
    file; the layers' bits / scheme / group size go in its metadata."""
    path = Path(path)
    layers = {n: {"bits": m.bits, "scheme": m.scheme, "group_size": m.group_size,
                  "in_features": m.in_features, "out_features": m.out_features}
              for n, m in quant_layers(model)}
    if not layers:
        raise ValueError("save_quantized: the model has no quantized layer (call quantize first)")
    state = {k: v.detach().contiguous().cpu() for k, v in base_state(model).items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata={"format": FORMAT, "layers": json.dumps(layers)})
    return path


def load_quantized(model: nn.Module, path: str | os.PathLike, backend: str = "auto") -> nn.Module:
    """Turn a float model of the same architecture into the saved quantized base (in place):
    the listed Linear layers become ``QuantLinear`` with the stored codes, then every base
    tensor is loaded (strict: a missing or unexpected tensor is an error naming it)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"load_quantized: {path} does not exist")
    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
        if meta.get("format") != FORMAT:
            raise ValueError(f"load_quantized: {path} is not a lorakit quantized model file")
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no items
    for name, spec in json.loads(meta["layers"]).items():
        try:
            lin = model.get_submodule(name)
        except AttributeError:
            raise ValueError(f"load_quantized: {path} has layer {name}, the model has not") from None
        if not isinstance(lin, nn.Linear) or (lin.in_features, lin.out_features) != (
            spec["in_features"], spec["out_features"]
        ):
            raise ValueError(f"load_quantized: layer {name} does not match the file's {spec}")
        zeros = tensors.get(f"{name}.zeros")
        q = QTensor(tensors[f"{name}.packed"], tensors[f"{name}.scales"], zeros, spec["bits"],
                    spec["scheme"], spec["group_size"], spec["in_features"])
        new = QuantLinear(q, spec["out_features"], tensors.get(f"{name}.bias"))
        set_module(model, name, new.to(tensors[f"{name}.packed"].device).train(lin.training))
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"load_quantized: {path} does not fit the model: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
    set_backend(model, backend)
    return model


def merge_quantized(model: nn.Module, names=None) -> dict[str, float]:
    """Merge adapters into the quantized layers by re-quantizing ``W_hat + dW``; returns
    ``{layer: ||Q(W_hat + dW) - (W_hat + dW)||_F}`` (the error merging adds). ``unmerge``
    restores the original codes. (``lorakit.core.merge`` alone keeps a float copy.)"""
    from ..api import merge

    layers = quant_layers(model)
    for _, m in layers:
        m.merge_mode = "requantize"
    try:
        merge(model, names)
    finally:
        for _, m in layers:
            m.merge_mode = "dequantize"
    return {n: m.merge_error for n, m in layers if m.merge_error is not None}


def bits_per_weight(bits: int, scheme: str, group_size: int) -> float:
    return stored_bits(bits, scheme, group_size)


def merged_quantized_copy(model: nn.Module) -> tuple[nn.Module, dict[str, float]]:
    """A deep copy of ``model`` with every adapter merged into its quantized layers by
    re-quantizing ``W_hat + dW``, hosts unwrapped: a plain quantized base for
    ``save_quantized``. Also ``{layer: ||Q(W_hat + dW) - (W_hat + dW)||_F / ||W_hat + dW||_F}``
    (the relative error the merge adds; ``model`` itself is left untouched)."""
    import copy

    out = copy.deepcopy(model)
    absolute = merge_quantized(out)
    errors = {n: absolute[n] / max(float(torch.linalg.norm(m.weight)), 1e-12)
              for n, m in quant_layers(out) if n in absolute}
    for name, m in reversed(named_adapted(out)):
        if not isinstance(m, Host):
            raise ValueError(f"merged_quantized_copy: {name} is not a host (saved-module "
                             "methods cannot be merged into quantized codes)")
        if isinstance(m.base, QuantLinear):
            m.base._saved = None  # the merged codes are the layer's codes from now on
        set_module(out, name, m.base)
    return out.eval(), errors
