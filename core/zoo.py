"""Tiny models that exercise every host kind (tests, ``lorakit selfcheck``, benchmarks).

Each entry builds ``(model, example_input, targets, slices)``; shapes are small so a
full contract check of every method runs in seconds on a CPU.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn


class TokenMLP(nn.Module):
    """ViT-style MLP on tokens (N, L, C): two Linears (host ``linear``)."""

    def __init__(self, c: int = 32, hidden: int = 64):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(c, hidden), nn.GELU(), nn.Linear(hidden, c)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class GridAttention(nn.Module):
    """SAM-style attention on a (N, H, W, C) grid with a fused ``qkv`` Linear."""

    def __init__(self, c: int = 32, heads: int = 4):
        super().__init__()
        self.heads = heads
        self.qkv, self.proj = nn.Linear(c, 3 * c), nn.Linear(c, c)

    def forward(self, x: Tensor) -> Tensor:
        n, h, w, c = x.shape
        qkv = self.qkv(x).reshape(n, h * w, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        out = torch.nn.functional.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        return self.proj(out.transpose(1, 2).reshape(n, h, w, c))


class MHABlock(nn.Module):
    """open_clip 3.x-style residual block around ``nn.MultiheadAttention`` (causal mask)."""

    def __init__(self, c: int = 32, heads: int = 4, batch_first: bool = True, causal: bool = True):
        super().__init__()
        self.ln = nn.LayerNorm(c)
        self.attn = nn.MultiheadAttention(c, heads, batch_first=batch_first)
        self.causal = causal

    def forward(self, x: Tensor) -> Tensor:
        length = x.shape[1] if self.attn.batch_first else x.shape[0]
        mask = None
        if self.causal:
            mask = torch.full((length, length), float("-inf"), device=x.device).triu(1)
        h = self.ln(x)
        return x + self.attn(h, h, h, need_weights=False, attn_mask=mask)[0]


class RawInProjAttention(nn.Module):
    """The layout of open_clip's custom ``Attention`` (``block_type="custom"``): a raw
    ``in_proj_weight`` parameter applied with ``F.linear``, batch-first tokens, an
    ``out_proj`` Linear (host ``in_proj``). Written here so tests do not depend on which
    open_clip release is installed."""

    def __init__(self, c: int = 32, heads: int = 4):
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.randn(3 * c, c) * c**-0.5)
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * c))
        self.out_proj = nn.Linear(c, c)

    def forward(self, x: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        n, length, c = x.shape
        qkv = torch.nn.functional.linear(x, self.in_proj_weight, self.in_proj_bias)
        q, k, v = (t.reshape(n, length, self.heads, -1).transpose(1, 2) for t in qkv.chunk(3, -1))
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.out_proj(out.transpose(1, 2).reshape(n, length, c))


class InProjBlock(nn.Module):
    def __init__(self, c: int = 32):
        super().__init__()
        self.ln, self.attn = nn.LayerNorm(c), RawInProjAttention(c)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.attn(self.ln(x))


class TinyCNN(nn.Module):
    """A 3x3 and a 1x1 convolution (host ``conv2d``)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(8, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 8, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv2(torch.relu(self.conv1(x)))


Builder = Callable[[], tuple[nn.Module, Tensor, tuple[str, ...], tuple[str, ...]]]

ZOO: dict[str, Builder] = {
    "linear": lambda: (TokenMLP(), torch.randn(2, 6, 32), ("fc1", "fc2"), ("q", "k", "v")),
    "fused_qkv": lambda: (GridAttention(), torch.randn(2, 4, 4, 32), ("qkv",), ("q", "v")),
    "mha": lambda: (
        MHABlock(batch_first=True),
        torch.randn(2, 6, 32),
        ("attn",),
        ("q", "k", "v", "o"),
    ),
    "mha_seq_first": lambda: (
        MHABlock(batch_first=False),
        torch.randn(6, 2, 32),
        ("attn",),
        ("q", "v"),
    ),
    "in_proj": lambda: (InProjBlock(), torch.randn(2, 6, 32), ("attn",), ("q", "k", "v", "o")),
    "conv2d": lambda: (TinyCNN(), torch.randn(2, 8, 6, 6), ("conv1", "conv2"), ("q", "k", "v")),
}

# host kind each zoo entry exercises (a method declares the kinds it supports)
ZOO_HOST = {
    "linear": "linear",
    "fused_qkv": "fused_qkv",
    "mha": "mha",
    "mha_seq_first": "mha",
    "in_proj": "in_proj",
    "conv2d": "conv2d",
}


def build(name: str, seed: int = 0):
    """The same base weights for the same ``seed``: fresh copies for save/load checks."""
    torch.manual_seed(seed)
    model, x, targets, slices = ZOO[name]()
    torch.manual_seed(seed + 1)
    return model.eval(), torch.randn_like(x), targets, slices
