"""Hosts: where an adapter attaches. Each wraps a layer, calls it, and adds the deltas.

- ``LinearHost``: ``nn.Linear`` and subclasses (Whisper's dtype-casting Linear, SAM's
  decoder, ViT MLPs); one slot, the whole weight.
- ``FusedQKVHost``: a Linear producing ``[q; k; v]`` (SAM's ``qkv``); one slot per
  enabled slice, so q and v can be adapted and k left alone.
- ``MHAHost``: attention keeping a raw ``in_proj_weight`` (``nn.MultiheadAttention``,
  batch_first either way); q/k/v (and ``o``, the out_proj) slices get their low-rank
  deltas added to the projections, so no weight is re-merged on each forward call.
- ``Conv2dHost``: ``nn.Conv2d`` (1x1 and kxk, groups=1); the slot is the kernel
  flattened to ``(C_out, C_in * kh * kw)``.

While merged or disabled a host simply calls its base layer: merged inference costs
exactly what the base model costs.
"""

from __future__ import annotations

import abc

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .methods.base import ConvOps, HostOps, Method

SLICE_INDEX = {"q": 0, "k": 1, "v": 2}


class Host(nn.Module, abc.ABC):
    kind = "host"

    def __init__(self, base: nn.Module, adapters: dict[str, Method]):
        super().__init__()
        self.base = base
        self.adapters = nn.ModuleDict(adapters)
        self.merged = False
        self.disabled = False

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name in ("base", "adapters"):
                raise
            return getattr(self._modules["base"], name)  # weight, in_features, batch_first, ...

    @property
    def active(self) -> bool:
        return not (self.disabled or self.merged)

    @abc.abstractmethod
    def slot_weight(self, slot: str) -> Tensor:
        """The base weight rows a slot adapts, as a ``(d_out, d_in)`` view."""

    def _delta(self, slot: str, x: Tensor, out_dtype: torch.dtype) -> Tensor:
        method = self.adapters[slot]
        p = next(method.parameters())
        return method.delta(x.to(p.dtype)).to(out_dtype)

    @torch.no_grad()
    def merge(self) -> None:
        if self.merged:
            return
        for slot, method in self.adapters.items():
            w = self.slot_weight(slot)
            w.add_(method.delta_weight().reshape(w.shape).to(w.dtype))
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if not self.merged:
            return
        for slot, method in self.adapters.items():
            w = self.slot_weight(slot)
            w.sub_(method.delta_weight().reshape(w.shape).to(w.dtype))
        self.merged = False

    def extra_repr(self) -> str:
        return f"kind={self.kind}, merged={self.merged}, disabled={self.disabled}"


class LinearHost(Host):
    kind = "linear"

    def slot_weight(self, slot: str) -> Tensor:
        return self.base.weight

    def forward(self, x: Tensor) -> Tensor:
        out = self.base(x)
        if self.active:
            out = out + self._delta("weight", x, out.dtype)
        return out


class Conv2dHost(LinearHost):
    kind = "conv2d"

    def slot_weight(self, slot: str) -> Tensor:
        return self.base.weight.view(self.base.weight.shape[0], -1)


class FusedQKVHost(Host):
    kind = "fused_qkv"

    def slot_weight(self, slot: str) -> Tensor:
        d = self.base.out_features // 3
        i = SLICE_INDEX[slot]
        return self.base.weight[i * d : (i + 1) * d]

    def forward(self, x: Tensor) -> Tensor:
        out = self.base(x)
        if not self.active:
            return out
        d = out.shape[-1] // 3
        parts = []
        for slot in ("q", "k", "v"):
            if slot in self.adapters:
                parts.append(self._delta(slot, x, out.dtype))
            else:
                parts.append(out.new_zeros(out.shape[:-1] + (d,)))
        return out + torch.cat(parts, -1)


def _float_mask(mask: Tensor, dtype: torch.dtype) -> Tensor:
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(
            mask, float("-inf")
        )
    return mask.to(dtype)


class MHAHost(Host):
    """``nn.MultiheadAttention`` with per-slice adapters on q, k, v (and o)."""

    kind = "mha"

    def slot_weight(self, slot: str) -> Tensor:
        m = self.base
        if slot == "o":
            return m.out_proj.weight
        e = m.embed_dim
        i = SLICE_INDEX[slot]
        return m.in_proj_weight[i * e : (i + 1) * e]

    def _proj(self, x: Tensor, slot: str) -> Tensor:
        m, e = self.base, self.base.embed_dim
        i = SLICE_INDEX[slot]
        bias = m.in_proj_bias[i * e : (i + 1) * e] if m.in_proj_bias is not None else None
        y = F.linear(x, m.in_proj_weight[i * e : (i + 1) * e], bias)
        if slot in self.adapters:
            y = y + self._delta(slot, x, y.dtype)
        return y

    def _packed_proj(self, x: Tensor) -> Tensor:
        m = self.base
        y = F.linear(x, m.in_proj_weight, m.in_proj_bias)
        parts = [
            self._delta(s, x, y.dtype) if s in self.adapters else None for s in ("q", "k", "v")
        ]
        zeros = None
        for i, p in enumerate(parts):
            if p is None:
                zeros = zeros if zeros is not None else y.new_zeros(y.shape[:-1] + (m.embed_dim,))
                parts[i] = zeros
        return y + torch.cat(parts, -1)

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        key_padding_mask: Tensor | None = None,
        need_weights: bool = True,
        attn_mask: Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        m = self.base
        if not self.active:
            return m(
                query,
                key,
                value,
                key_padding_mask=key_padding_mask,
                need_weights=need_weights,
                attn_mask=attn_mask,
                average_attn_weights=average_attn_weights,
                is_causal=is_causal,
            )
        batched = query.dim() == 3
        if not batched:
            query, key, value = query[None], key[None], value[None]
            key_padding_mask = key_padding_mask[None] if key_padding_mask is not None else None
        elif not m.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        n, tgt, e = query.shape
        src, h = key.shape[1], m.num_heads
        if query is key and key is value:  # self-attention: one packed projection, as the base does
            q, k, v = self._packed_proj(query).chunk(3, dim=-1)
        else:
            q, k, v = self._proj(query, "q"), self._proj(key, "k"), self._proj(value, "v")
        q = q.reshape(n, tgt, h, e // h).transpose(1, 2)
        k = k.reshape(n, src, h, e // h).transpose(1, 2)
        v = v.reshape(n, src, h, e // h).transpose(1, 2)

        mask = None
        if attn_mask is not None:
            mask = _float_mask(attn_mask, q.dtype)
            mask = mask.view(1, 1, tgt, src) if mask.dim() == 2 else mask.view(n, h, tgt, src)
        if key_padding_mask is not None:
            pad = _float_mask(key_padding_mask, q.dtype).view(n, 1, 1, src)
            mask = pad if mask is None else mask + pad
        dropout = m.dropout if self.training else 0.0
        weights = None
        if need_weights:
            scores = (q @ k.transpose(-2, -1)) * (e // h) ** -0.5
            if mask is not None:
                scores = scores + mask
            elif is_causal:
                causal = torch.ones(tgt, src, dtype=torch.bool, device=q.device).triu(1)
                scores = scores.masked_fill(causal, float("-inf"))
            weights = scores.softmax(-1)
            attn = F.dropout(weights, dropout) @ v
            weights = weights.mean(1) if average_attn_weights else weights
        else:
            attn = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=dropout, is_causal=is_causal and mask is None
            )
        attn = attn.transpose(1, 2).reshape(n, tgt, e)
        out = F.linear(attn, m.out_proj.weight, m.out_proj.bias)
        if "o" in self.adapters:
            out = out + self._delta("o", attn, out.dtype)
        if not batched:
            out = out[0]
            weights = weights[0] if weights is not None else None
        elif not m.batch_first:
            out = out.transpose(0, 1)
        return out, weights


def host_kind(name: str, module: nn.Module) -> str | None:
    """Which host adapts this module, or None when it is not an adaptable layer."""
    if isinstance(module, nn.MultiheadAttention):
        return "mha"
    if isinstance(module, nn.Conv2d):
        return "conv2d"
    if isinstance(module, nn.Linear):
        fused = name.rsplit(".", 1)[-1] == "qkv" and module.out_features % 3 == 0
        return "fused_qkv" if fused else "linear"
    return None


HOSTS: dict[str, type[Host]] = {
    "linear": LinearHost,
    "fused_qkv": FusedQKVHost,
    "mha": MHAHost,
    "conv2d": Conv2dHost,
}


def slot_layout(
    name: str, module: nn.Module, kind: str, slices: tuple[str, ...]
) -> dict[str, tuple[int, int]]:
    """The slots a host of this kind would adapt, with their ``(d_out, d_in)``."""
    if kind in ("linear", "conv2d"):
        w = module.weight
        if kind == "conv2d":
            if module.groups != 1:
                raise ValueError(
                    f"layer {name}: grouped convolutions (groups={module.groups}) are not supported"
                )
            if module.padding_mode != "zeros":
                raise ValueError(
                    f"layer {name}: padding_mode={module.padding_mode!r} is not supported"
                )
        return {"weight": (w.shape[0], w[0].numel())}
    if kind == "fused_qkv":
        qkv = [s for s in slices if s != "o"]
        if not qkv:
            raise ValueError(f"layer {name}: a fused qkv layer needs one of q, k, v in slices")
        d = module.out_features // 3
        return {s: (d, module.in_features) for s in ("q", "k", "v") if s in qkv}
    if kind == "mha":
        if not module._qkv_same_embed_dim or module.bias_k is not None or module.add_zero_attn:
            raise ValueError(
                f"layer {name}: MultiheadAttention with kdim/vdim != embed_dim, bias_k/bias_v or "
                "add_zero_attn is not supported"
            )
        e = module.embed_dim
        return {s: (e, e) for s in ("q", "k", "v", "o") if s in slices}
    raise ValueError(f"layer {name}: {type(module).__name__} cannot host an adapter")


def ops_for(kind: str, module: nn.Module) -> HostOps:
    return ConvOps(module) if kind == "conv2d" else HostOps()
