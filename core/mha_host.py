"""``MHAHost``: ``nn.MultiheadAttention`` with per-slice adapters on q, k, v (and o).

The low-rank deltas are added to the projections inside our own attention forward, so no
weight is re-merged on each call (PEFT merges per call). Inside an
``nn.TransformerEncoderLayer`` PyTorch's fused fast path would read the weights directly
and skip the adapters; ``inject`` disables that fast path (see ``layout.guard_fast_path``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .hosts import SLICE_INDEX, Host, fused_delta

QKV = ("q", "k", "v")


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
        d = self._delta(slot, x, y.dtype)
        return y if d is None else y + d

    def _packed_proj(self, x: Tensor) -> Tensor:
        m = self.base
        return fused_delta(self, x, F.linear(x, m.in_proj_weight, m.in_proj_bias), QKV)

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
        if getattr(m.out_proj, "weight_is_computed", False):  # a quantized out_proj: its
            out = m.out_proj(attn)  # own matmul, so autograd keeps no dense weight copy
        else:
            out = F.linear(attn, m.out_proj.weight, m.out_proj.bias)
        d = self._delta("o", attn, out.dtype)
        out = out if d is None else out + d
        if not batched:
            out = out[0]
            weights = weights[0] if weights is not None else None
        elif not m.batch_first:
            out = out.transpose(0, 1)
        return out, weights
