"""``quantize(model, ..., adapter=cfg)``: quantize and inject, letting a quantization-aware
method absorb the quantization error before any training step.

A method class may define

- ``absorb(w, spec, cfg) -> (QTensor, state)``: given one slot's float weight rows
  ``w (d_out, d_in)``, the codes to store and the method's initial tensors (a
  ``state_dict`` subset) such that ``Q + dW ~ w``;
- ``plan_bits(layers, spec, cfg) -> ({layer name: bits}, notes)``: a per-layer bit width
  (LQ-LoRA's ILP), given every quantized layer's float weight and adapted row slices.

Layers that are quantized but not adapted get plain codes; adapted layers that are not
quantized get the method's usual (training-free, "starts at the base") initialisation.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from ..hosts import FUSED_SLICES
from ..inject import find_targets, inject, layer_config
from ..layout import n_slices, slot_layout
from ..registry import METHODS
from .codes import QTensor, QuantSpec, cat_rows
from .layer import QuantLayer, QuantLinear, set_module


@dataclass
class LayerWeights:
    """One quantized layer as ``plan_bits`` sees it."""

    name: str
    weight: Tensor  # (d_out, d_in) float32
    slots: dict[str, slice]  # adapted row blocks by slot name ({} when not adapted)
    fisher: Tensor | None = None  # the weight's diagonal Fisher (LQ-LoRA's ``fisher``)


def slot_rows(name: str, lin: nn.Linear, kind: str, cfg) -> dict[str, slice]:
    """Rows of ``lin.weight`` each adapted slot covers."""
    layout = slot_layout(name, lin, kind, cfg.slices, cfg.fused)
    if kind == "linear":
        return {"weight": slice(0, lin.out_features)}
    names = FUSED_SLICES[n_slices(name, cfg.fused)]
    d = lin.out_features // len(names)
    return {s: slice(names.index(s) * d, (names.index(s) + 1) * d) for s in layout}


def assemble(w: Tensor, blocks: dict[int, QTensor], spec: QuantSpec) -> QTensor:
    """Codes for every row of ``w``: the given row blocks (by start row), plain codes for
    the rows between them."""
    parts, row = [], 0
    for start in sorted(blocks):
        if start > row:
            parts.append(spec.quantize(w[row:start]))
        parts.append(blocks[start])
        row = start + blocks[start].packed.shape[0]
    if row < w.shape[0]:
        parts.append(spec.quantize(w[row:]))
    return cat_rows(parts)


def check_fisher(cfg, fisher: dict | None, items: list[LayerWeights]) -> None:
    """A Fisher estimate is given exactly when the method asks for one (``fisher: true``),
    covering every absorbed layer with the weight's shape; else one ``ValueError`` line."""
    wants = bool(getattr(cfg, "fisher", False))
    if fisher is not None and not wants:
        raise ValueError(f"quantize: fisher= is read by lq_lora with fisher: true, not by "
                         f"{cfg.method} (fisher: {getattr(cfg, 'fisher', 'no such field')})")
    if not wants:
        return
    if fisher is None:
        raise ValueError(f"{cfg.method}: fisher: true needs a Fisher estimate: quantize(model, "
                         "..., adapter=cfg, fisher=fisher_diagonal(model, batches, loss_fn))")
    for item in items:
        if not item.slots:
            continue
        f = fisher.get(item.name)
        if f is None or tuple(f.shape) != tuple(item.weight.shape):
            got = "nothing" if f is None else tuple(f.shape)
            raise ValueError(f"{cfg.method}: the Fisher estimate has {got} for layer "
                             f"{item.name}, expected {tuple(item.weight.shape)}")
        item.fisher = f.detach().float().to(item.weight.device)


def quantize_with_adapter(model, layers, bits, scheme, group_size, cfg, name, report,
                          fisher: dict | None = None):

    cfg.validate()
    cls = METHODS[cfg.method][1]
    adapted, skipped = find_targets(model, cfg.targets, cfg.fused)
    kinds = {n: k for n, _, k in adapted}
    absorbs = hasattr(cls, "absorb")
    items = [
        LayerWeights(
            n, lin.weight.detach().float(),
            slot_rows(n, lin, kinds[n], cfg) if absorbs and kinds.get(n) in (
                "linear", "fused_qkv") else {},
        )
        for n, lin in layers
    ]
    check_fisher(cfg, fisher, items)
    base = QuantSpec(bits, scheme, group_size)
    plan, notes = cls.plan_bits(items, base, cfg) if hasattr(cls, "plan_bits") else ({}, [])
    report.notes += notes
    init: dict[tuple[str, str], dict] = {}
    for item, (lname, lin) in zip(items, layers, strict=True):
        spec = replace(base, bits=plan.get(lname, bits))
        blocks = {}
        for slot, rows in item.slots.items():
            extra = {} if item.fisher is None else {"fisher": item.fisher[rows]}
            q, state = cls.absorb(item.weight[rows], spec, layer_config(cfg, lname), **extra)
            blocks[rows.start] = q
            init[(lname, slot)] = state
        q = QuantLinear(assemble(item.weight, blocks, spec), lin.out_features, lin.bias)
        plain = spec.fake(item.weight)
        err = float(torch.linalg.norm(item.weight - plain) / torch.linalg.norm(item.weight))
        report.layers.append(QuantLayer(lname, tuple(item.weight.shape), spec.bits, q.nbytes(),
                                        err))
        set_module(model, lname, q.to(item.weight.device).train(lin.training))
    report.adapter = inject(model, cfg, name, names=[n for n, _, _ in adapted])
    report.adapter.skipped += skipped
    _load_init(model, name, init)
    _adapted_errors(model, name, items, report)
    return report


@torch.no_grad()
def _load_init(model: nn.Module, name: str, init: dict) -> None:
    """Copy each slot's ``absorb`` tensors into the injected method (same shapes)."""
    for (lname, slot), state in init.items():
        method = model.get_submodule(lname).adapters[name][slot]
        own = method.state_dict()  # tensors sharing storage with the method's
        for key, t in state.items():
            if key not in own or own[key].shape != t.shape:
                raise ValueError(
                    f"{method.name}.absorb returned {key!r} {tuple(t.shape)}; the method has "
                    f"{tuple(own[key].shape) if key in own else 'no such tensor'}"
                )
            own[key].copy_(t)


@torch.no_grad()
def _adapted_errors(model, name, items, report) -> None:
    by_name = {q.name: q for q in report.layers}
    for item in items:
        if not item.slots:
            continue
        host = model.get_submodule(item.name)
        w_hat = host.base.weight.clone()
        for slot, rows in item.slots.items():
            w_hat[rows] += host.adapters[name][slot].delta_weight().float().reshape(
                w_hat[rows].shape)
        by_name[item.name].rel_error_adapted = float(
            torch.linalg.norm(item.weight - w_hat) / torch.linalg.norm(item.weight))
