"""What every method shares: its config fields, the per-layer module contract, host ops.

A method instance adapts one *slot*: a frozen weight ``W0`` of shape ``(d_out, d_in)``.
For a Linear that is the whole weight; for a fused qkv Linear or an attention
``in_proj_weight`` it is one of the q/k/v row blocks; for a Conv2d it is the kernel
flattened to ``(C_out, C_in * kh * kw)``.

The method never touches the input layout itself: the host hands it ``HostOps`` that
apply a ``(p, d_in)`` matrix to the input (``down``), mix channels (``mix``), and sum
equal channel chunks (``fold``). So one ``delta`` works on tokens and on feature maps.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass, field
from typing import ClassVar

import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class AdapterConfig:
    """Fields every method has.

    r: rank. alpha: scale numerator (``s = alpha / r``, or ``alpha / sqrt(r)`` with
    ``rslora``). dropout: on the adapter's input. targets: module-name patterns (a name
    equal to the pattern, ending in ``.pattern``, or matching it as a regex) or a preset
    name from ``lorakit.core.PRESETS``. slices: which q/k/v (and ``o`` for attention's
    out_proj) slices of fused projections to adapt. fused: Linear layers (by the last
    part of their name) whose output is ``n`` equal slices, ``n`` = 3 (q, k, v) or 2 (k, v);
    declared, never guessed. modules_to_save: name patterns of extra modules (a head, a
    norm) trained in full and saved with the adapter. rank_pattern / alpha_pattern: per-layer
    ``r`` / ``alpha`` by name pattern (as PEFT's), overriding ``r`` / ``alpha``.
    """

    r: int = 8
    alpha: float = 8.0
    dropout: float = 0.0
    targets: tuple[str, ...] = ()
    slices: tuple[str, ...] = ("q", "k", "v")
    rslora: bool = False
    fused: dict[str, int] = field(default_factory=lambda: {"qkv": 3})
    modules_to_save: tuple[str, ...] = ()
    rank_pattern: dict[str, int] = field(default_factory=dict)
    alpha_pattern: dict[str, float] = field(default_factory=dict)

    method: ClassVar[str] = "base"

    def scale(self) -> float:
        return self.alpha / (math.sqrt(self.r) if self.rslora else self.r)

    def validate(self) -> None:
        if not isinstance(self.r, int) or self.r < 1:
            raise ValueError(f"{self.method}: r must be a positive integer, got {self.r!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"{self.method}: dropout must be in [0, 1), got {self.dropout!r}")
        bad = [s for s in self.slices if s not in ("q", "k", "v", "o")]
        if bad or not self.slices:
            raise ValueError(
                f"{self.method}: slices must be a non-empty subset of q, k, v, o; got {self.slices!r}"
            )
        bad = {k: v for k, v in self.fused.items() if v not in (2, 3)}
        if bad:
            raise ValueError(
                f"{self.method}: fused maps layer names to 3 (q, k, v) or 2 (k, v) slices; "
                f"got {bad}"
            )
        bad = {k: v for k, v in self.rank_pattern.items() if not isinstance(v, int) or v < 1}
        if bad:
            raise ValueError(f"{self.method}: rank_pattern ranks must be positive integers: {bad}")


class HostOps:
    """How a host applies matrices to its input. Linear layout: channels last."""

    channel_dim: int = -1
    kernel: tuple[int, int] = (1, 1)

    def down(self, x: Tensor, m: Tensor) -> Tensor:
        """Apply ``m`` of shape ``(p, d_in_part)`` to the input; channels become ``p``."""
        return F.linear(x, m)

    def mix(self, z: Tensor, m: Tensor) -> Tensor:
        """Channel mixing ``(q, p)``: p channels in, q out, per token / pixel."""
        return F.linear(z, m)

    def fold(self, x: Tensor, n: int) -> Tensor:
        """Sum ``n`` equal chunks of the input channels: ``x_1 + ... + x_n``."""
        return x.unflatten(-1, (n, x.shape[-1] // n)).sum(-2)

    def scale_channels(self, z: Tensor, v: Tensor) -> Tensor:
        return z * v


class ConvOps(HostOps):
    """Conv2d layout (N, C, H, W); ``down`` is a convolution with the host's geometry."""

    channel_dim = 1

    def __init__(self, conv: nn.Conv2d):
        self.kernel = tuple(conv.kernel_size)
        self.stride, self.padding, self.dilation = conv.stride, conv.padding, conv.dilation

    def down(self, x: Tensor, m: Tensor) -> Tensor:
        kh, kw = self.kernel
        w = m.reshape(m.shape[0], -1, kh, kw)
        return F.conv2d(x, w, None, self.stride, self.padding, self.dilation)

    def mix(self, z: Tensor, m: Tensor) -> Tensor:
        return F.conv2d(z, m[:, :, None, None])

    def fold(self, x: Tensor, n: int) -> Tensor:
        return x.unflatten(1, (n, x.shape[1] // n)).sum(1)

    def scale_channels(self, z: Tensor, v: Tensor) -> Tensor:
        return z * v[:, None, None]


LINEAR_OPS = HostOps()


def kaiming_(t: Tensor) -> Tensor:
    """LoRA's A init: Kaiming-uniform with a = sqrt(5) (nn.Linear's default)."""
    return nn.init.kaiming_uniform_(t, a=math.sqrt(5))


@dataclass
class SlotInfo:
    """What a method knows of the slot it adapts."""

    name: str  # full module name + slot, for error messages
    d_out: int
    d_in: int
    weight: Tensor  # frozen W0 slice, (d_out, d_in), detached float32 copy (not stored)
    ops: HostOps = field(default=LINEAR_OPS)
    host: str = "linear"
    context: dict = field(default_factory=dict)  # shared by all slots of one inject() call


class Method(nn.Module, abc.ABC):
    """One method's tensors for one slot. Subclasses define ``delta`` (and ``delta_weight``
    when mergeable). ``delta`` gets the raw layer input and returns the update to add to
    the layer's output."""

    name: ClassVar[str] = "base"
    mergeable: ClassVar[bool] = True
    hosts: ClassVar[frozenset[str]] = frozenset(
        {"linear", "fused_qkv", "mha", "in_proj", "conv2d"}
    )
    formula: ClassVar[str] = ""

    def __init__(self, cfg: AdapterConfig, slot: SlotInfo):
        super().__init__()
        if slot.host not in self.hosts:
            raise ValueError(
                f"{self.name} cannot adapt {slot.name} (host kind {slot.host!r}); "
                f"it supports {sorted(self.hosts)}"
            )
        self.cfg, self.slot_name = cfg, slot.name
        self.d_out, self.d_in, self.r = slot.d_out, slot.d_in, cfg.r
        self.s = cfg.scale()
        self.ops = slot.ops
        self.drop = nn.Dropout(cfg.dropout) if cfg.dropout > 0 else nn.Identity()
        self.check_rank(cfg.r, min(slot.d_out, slot.d_in), slot)

    def check_rank(self, r: int, limit: int, slot: SlotInfo) -> None:
        if r > limit:
            raise ValueError(
                f"{self.name}: rank r={r} is larger than layer {slot.name} allows "
                f"(weight {slot.d_out}x{slot.d_in}, at most {limit})"
            )

    @abc.abstractmethod
    def delta(self, x: Tensor) -> Tensor:
        """The update to add to the layer's output for input ``x``."""

    def delta_weight(self) -> Tensor:
        raise ValueError(
            f"{self.name} is not mergeable (layer {self.slot_name}): keep it as a module"
        )

    def regularizer(self) -> Tensor | None:
        return None

    def after_step(self) -> None:
        return None

    def extra_repr(self) -> str:
        return f"d_out={self.d_out}, d_in={self.d_in}, r={self.r}, s={self.s:g}"


class FactoredMethod(Method):
    """A method whose update is one low-rank pair built per call: ``dW = s B A`` with
    ``(A, B) = factors()`` (projected, mixed from bases, ...)."""

    @abc.abstractmethod
    def factors(self) -> tuple[Tensor, Tensor]:
        """``(A (r x d_in), B (d_out x r))`` as used in this forward call."""

    def delta(self, x: Tensor) -> Tensor:
        a, b = self.factors()
        return self.ops.mix(self.ops.down(self.drop(x), a), b) * self.s

    def delta_weight(self) -> Tensor:
        a, b = self.factors()
        return self.s * (b @ a)
