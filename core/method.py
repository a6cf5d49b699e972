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
import difflib
import hashlib
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .resize import Resize


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


def weight_digest(w: Tensor) -> str:
    """sha256 of ``w``'s shape and float32 bytes (a bf16 or fp16 base gives the same digest
    as its exact float32 copy): which base weight a ``from_base`` buffer was computed from."""
    w = w.detach().float().contiguous().cpu()
    h = hashlib.sha256("x".join(map(str, w.shape)).encode())
    h.update(memoryview(w.numpy()).cast("B"))
    return h.hexdigest()


def canonical_signs(u: Tensor, vh: Tensor) -> tuple[Tensor, Tensor]:
    """``(u, vh)`` with each singular pair ``(u[:, i], vh[i])`` negated together where needed
    so that the largest-magnitude entry of ``u[:, i]`` is positive (the first such entry on
    a tie; a zero column is left as it is).

    An SVD fixes each pair only up to a common sign, and LAPACK's choice depends on the code
    path and the thread count, so an init built from the factors (LARGO's ``B0`` / ``A0``,
    LoRA-SB's ``B`` / ``A``, ...) came out with flipped pairs from one machine to the next;
    with this rule it is the same everywhere. Negation is exact, so ``u diag(s) vh`` keeps
    every bit. Works on batches (``u``: ``(..., m, k)``, ``vh``: ``(..., k, n)``)."""
    sign = pair_signs(u)
    return u * sign, vh * sign.mT


def pair_signs(u: Tensor) -> Tensor:
    """``(..., 1, k)``: -1 where column ``i`` of ``u`` (``(..., m, k)``) has a negative
    largest-magnitude entry (the first on a tie), else +1; ``u * pair_signs(u)`` follows the
    convention of ``canonical_signs``."""
    pick = torch.gather(u, -2, u.abs().argmax(-2, keepdim=True))
    return torch.where(pick < 0, -1.0, 1.0).to(u.dtype)


class SVDCache:
    """Thin SVDs of frozen weights, kept in this process by content, up to ``budget_mb``
    (``LORAKIT_SVD_CACHE_MB``, default 512, 0: off; ``clear()`` empties it).

    Every run of an SVD-initialised method (Comp-LoRA, SVFit, LARGO, LoRA-SB,
    ``sltrain_full``) decomposes the same frozen weights; ``lorakit compare`` trains each
    method at several lrs and seeds in one process, and a ViT-B/16 MLP weight alone takes
    about 2 s on one thread. The key is the weight's bytes (BLAKE2b), shape, dtype and
    device, so a changed weight is never served a stale decomposition; hits return copies.
    A full cache stores nothing more (no eviction): runs decompose their layers in the same
    order, and evicting the oldest would make a model larger than the budget miss on every
    layer; keeping the first ones serves most of it."""

    def __init__(self, budget_mb: float | None = None):
        if budget_mb is None:
            budget_mb = float(os.environ.get("LORAKIT_SVD_CACHE_MB", 512))
        self.budget = int(budget_mb * 2**20)
        self.entries: dict[tuple, tuple[Tensor, Tensor, Tensor]] = {}
        self.bytes = self.hits = self.misses = 0

    @staticmethod
    def key(w: Tensor) -> tuple:
        data = w.detach().contiguous().cpu().view(torch.uint8).numpy()
        return (tuple(w.shape), str(w.dtype), str(w.device),
                hashlib.blake2b(data, digest_size=20).hexdigest())  # fmt: skip

    def get(self, w: Tensor, compute: Callable[[Tensor], tuple]) -> tuple[Tensor, Tensor, Tensor]:
        if self.budget <= 0 or w.requires_grad:  # a graph is never served from the cache
            return compute(w)
        key = self.key(w)
        if key in self.entries:
            self.hits += 1
            return tuple(t.clone() for t in self.entries[key])  # type: ignore[return-value]
        self.misses += 1
        out = compute(w)
        size = sum(t.numel() * t.element_size() for t in out)
        if self.bytes + size <= self.budget:
            self.entries[key] = tuple(t.clone() for t in out)  # type: ignore[assignment]
            self.bytes += size
        return out

    def clear(self) -> None:
        self.entries.clear()
        self.bytes = 0


SVD_CACHE = SVDCache()


def thin_svd(w: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``torch.linalg.svd(w, full_matrices=False)`` in the sign convention of
    ``canonical_signs`` (each left singular vector's largest-magnitude entry is positive), so
    the factors do not depend on the machine, the thread count or the branch taken here.

    Computed on the tall side: LAPACK's SVD of a wide matrix took twice as long as that of
    its transpose on the CPU (768 x 3072: 3.75 s against 1.94 s on one thread), so a wide
    ``w`` is decomposed as ``w.T`` and the factors swapped back. Kept by content in
    ``SVD_CACHE`` for the next run in this process."""
    return SVD_CACHE.get(w, _thin_svd)


def _thin_svd(w: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    if w.shape[-2] >= w.shape[-1]:
        u, s, vh = torch.linalg.svd(w, full_matrices=False)
    else:
        v, s, uh = torch.linalg.svd(w.mT, full_matrices=False)
        u, vh = uh.mT, v.mT
    u, vh = canonical_signs(u, vh)
    return u, s, vh


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
    the layer's output.

    Everything a training loop, the registry or a shared tool reads from a method is
    declared below with a no-op default (``lorakit.core.protocol`` calls them; the
    runtime never probes with ``getattr``). A subclass overrides what it needs; a new
    public name close to a declared one (``after_stpe``) or with a hook prefix
    (``before_``, ``after_``, ``begin_``, ``end_``, ``abort_``, ``on_``, ``model_``) that
    no base declares is a ``TypeError`` when the class is defined, so a misspelt hook
    cannot silently do nothing.
    """

    name: ClassVar[str] = "base"
    mergeable: ClassVar[bool] = True
    hosts: ClassVar[frozenset[str]] = frozenset(
        {"linear", "fused_qkv", "mha", "in_proj", "conv2d"}
    )
    formula: ClassVar[str] = ""

    # --- flags (class-level) ----------------------------------------------------------
    needs_prepare: ClassVar[bool] = False  # initialises from gradients (protocol.prepare)
    rank_changing: ClassVar[bool] = False  # ranks change in training (RankedLoRA)
    starts_at_base: ClassVar[bool] = True  # a fresh adapter adds exactly 0
    trains_base_weights: ClassVar[bool] = False  # its optimizer also trains base weights
    step_lr_tensor: ClassVar[str] = ""  # the parameter whose group's lr is ``step_lr``
    param_options: ClassVar[dict[str, dict]] = {}  # optimizer options by parameter name
    merge_refusal: ClassVar[str] = "it is not mergeable"  # why merge refuses (not mergeable)
    # host kinds on which the adapter file alone cannot rebuild the update (its bases
    # depend on more than the file: the whole model, the kernel geometry); None: any host
    not_from_file: ClassVar[frozenset[str] | None] = frozenset()
    test_hyper: ClassVar[dict] = {}  # settings that make the tiny test layers valid
    # buffers added after files were saved without them: absent in a file, they keep their
    # fresh values (training state that the output does not depend on)
    optional_state: ClassVar[frozenset[str]] = frozenset()
    # buffers the base weight determines (an SVD basis of W0): recomputed from the base at
    # inject, never written to adapter files or checkpoints. A file records the sha256 of
    # each such slot's W0 (``base_digest``) instead, and a load onto another base is
    # refused; a file that holds these buffers (written before) still loads them.
    from_base: ClassVar[frozenset[str]] = frozenset()
    base_digest: str = ""  # sha256 of W0, set at init when ``from_base`` is not empty

    # --- whole-model hooks (static: called once per method class in the model) ---------
    make_optimizer: ClassVar[Callable[..., torch.optim.Optimizer] | None] = None
    full_weights: ClassVar[Callable[..., list] | None] = None  # with trains_base_weights

    step_lr: float | None = None  # the lr of this step (set by the protocol before hooks)
    _lr_pinned: bool = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        check_declared(cls)

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
        if self.from_base:
            self.base_digest = weight_digest(slot.weight)
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

    # --- per-slot hooks of the training protocol (no-ops here) --------------------------

    def regularizer(self) -> Tensor | None:
        """A penalty added to the loss (``regularization_loss``), or None."""
        return None

    def before_step(self) -> None:
        """After backward, before the optimizer step (gradients are complete)."""

    def after_step(self) -> None:
        """After each optimizer step (proximal steps, radius updates)."""

    def step_stats(self) -> list[Tensor]:
        """Tensors a distributed run averages across ranks before ``after_step``."""
        return []

    def finish(self) -> None:
        """Once at the end of training."""

    def take_resizes(self) -> list[Resize]:
        """Rank changes made since the last call (the protocol rebuilds their optimizer state)."""
        return []

    def active_rank(self) -> int:
        """The rank in use (a gated method: its non-zero gates)."""
        return int(self.r)

    def begin_prepare(self) -> None:
        """``needs_prepare``: before the prepare passes."""

    def prepare_grads(self) -> list[Tensor]:
        """``needs_prepare``: gradients a distributed run averages before ``end_prepare``."""
        return []

    def end_prepare(self, n_batches: int) -> None:
        """``needs_prepare``: after ``n_batches`` backward passes."""

    def abort_prepare(self) -> None:
        """``needs_prepare``: drop half-made state (also called after ``end_prepare``)."""

    def lr_parameter(self) -> nn.Parameter | None:
        """The tensor whose group's lr becomes ``step_lr``: ``step_lr_tensor``, else the first."""
        if self.step_lr_tensor:
            return self.get_parameter(self.step_lr_tensor)
        return next(iter(self.parameters()), None)

    def test_perturb(self) -> None:
        """After the contract test gives the adapter random values: put the method's state
        where the test exercises it (LARGO: a radius that binds)."""

    # --- whole-model hooks ------------------------------------------------------------

    @staticmethod
    def model_after_step(model: nn.Module) -> None:
        """After every slot's ``after_step``: decisions across layers (growth, pruning)."""

    @staticmethod
    def end_task(model: nn.Module, optimizer: torch.optim.Optimizer | None) -> None:
        """After each task of a continual run (cross-task state)."""

    def extra_repr(self) -> str:
        return f"d_out={self.d_out}, d_in={self.d_in}, r={self.r}, s={self.s:g}"


HOOK_PREFIXES = ("before_", "after_", "begin_", "end_", "abort_", "on_", "model_")


def check_declared(cls: type) -> None:
    """Refuse public names that look like a hook but are not declared by any base class."""
    declared = {n for base in cls.__mro__[1:] for n in vars(base) if not n.startswith("_")}
    hooks = [n for n in vars(Method) if not n.startswith("_")]
    for name in vars(cls):
        if name.startswith("_") or name in declared:
            continue
        close = difflib.get_close_matches(name, hooks, n=1, cutoff=0.8)
        if close or name.startswith(HOOK_PREFIXES):
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise TypeError(
                f"{cls.__name__}.{name} is not a hook that Method declares, so no training "
                f"loop would call it{hint} (declared hooks: lorakit.core.method.Method)"
            )


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
