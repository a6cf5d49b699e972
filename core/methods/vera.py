"""VeRA (vector-based random matrix adaptation): frozen shared random A, B; train two vectors.

``delta(x) = diag(b) B diag(d) A dropout(x)``. ``A (r x d_in)`` and ``B (d_out x r)`` are
frozen, Kaiming-uniform from ``seed``, and shared by every adapted slot of one shape (one
pair per ``d_out x d_in`` and kernel). They are regenerated from the seed on load, not
saved, unless ``save_bases=True``. Trainable per slot: ``d (r)`` (init ``d_initial``) and
``b (d_out)`` (init 0, so a fresh adapter is the base model).
Trainable: ``r + d_out`` per layer. Mergeable: ``dW = diag(b) B diag(d) A``.
Defaults (as Hugging Face PEFT's VeRA): r=256, d_initial=0.1, seed=0, save_bases=False;
no alpha scaling (``alpha``/``rslora`` are ignored). ``r`` may exceed the layer's size.
Output equals PEFT 0.21.2's VeRA given the same A, B, d, b (a test).

Also holds the small helper the other shared-random-basis methods use (``shared_bases``).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .base import AdapterConfig, Method, SlotInfo


class Bases(nn.Module):
    """Frozen random tensors shared by the slots of one shape group (buffers only)."""

    def __init__(self, tensors: dict[str, Tensor], persistent: bool):
        super().__init__()
        for name, t in tensors.items():
            self.register_buffer(name, t, persistent=persistent)


def shape_key(slot: SlotInfo) -> str:
    kh, kw = slot.ops.kernel
    return f"{slot.d_out}x{slot.d_in}" + (f"k{kh}x{kw}" if (kh, kw) != (1, 1) else "")


def shared_bases(
    slot: SlotInfo,
    method: str,
    key: str,
    seed: int,
    persistent: bool,
    make: Callable[[torch.Generator], dict[str, Tensor]],
) -> Bases:
    """The ``Bases`` of group ``key`` for this inject call, created once from ``make(gen)``.

    The generator's seed depends only on ``seed`` and ``key`` (not on layer order), so a
    fresh process regenerates bit-identical bases."""
    banks = slot.context.setdefault(f"{method}_bases", {})
    if key not in banks:
        g = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(key.encode()))
        banks[key] = Bases(make(g), persistent)
    return banks[key]


def kaiming_uniform(shape: tuple[int, ...], g: torch.Generator) -> Tensor:
    """Kaiming-uniform (gain sqrt(2), fan_in = shape[1] * rest) drawn from generator ``g``."""
    fan_in = math.prod(shape[1:])
    bound = math.sqrt(3.0) * math.sqrt(2.0) / math.sqrt(fan_in)
    return torch.empty(shape).uniform_(-bound, bound, generator=g)


@dataclass
class VeRAConfig(AdapterConfig):
    r: int = 256
    d_initial: float = 0.1
    seed: int = 0
    save_bases: bool = False
    method = "vera"


class VeRA(Method):
    name = "vera"
    test_hyper = {"r": 4}
    not_from_file = frozenset({"conv2d"})  # conv bases come from the kernel geometry, not the file
    formula = "r + d_out per layer (A, B frozen, shared per shape, regenerated from seed)"

    def __init__(self, cfg: VeRAConfig, slot: SlotInfo):
        super().__init__(cfg, slot)
        self.s = 1.0
        r, d_out, d_in = self.r, self.d_out, self.d_in
        self.bases = shared_bases(
            slot,
            "vera",
            shape_key(slot) + f"r{r}",
            cfg.seed,
            cfg.save_bases,
            lambda g: {"A": kaiming_uniform((r, d_in), g), "B": kaiming_uniform((d_out, r), g)},
        )
        self.d = nn.Parameter(torch.full((r,), float(cfg.d_initial)))
        self.b = nn.Parameter(torch.zeros(d_out))

    def check_rank(self, r: int, limit: int, slot: SlotInfo) -> None:
        return None  # random projections may be wider than the layer

    def delta(self, x: Tensor) -> Tensor:
        ops = self.ops
        z = ops.scale_channels(ops.down(self.drop(x), self.bases.A), self.d)
        return ops.scale_channels(ops.mix(z, self.bases.B), self.b)

    def delta_weight(self) -> Tensor:
        return (self.b[:, None] * self.bases.B) @ (self.d[:, None] * self.bases.A)
