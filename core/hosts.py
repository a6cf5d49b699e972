"""Hosts: where adapters attach. Each wraps a layer, calls it, and adds the active deltas.

A host holds any number of *named* adapters (``host.adapters[name][slot] -> Method``);
the active ones (``host.active_names``) add their deltas, so several active adapters sum.

- ``LinearHost``: ``nn.Linear`` and subclasses (Whisper's dtype-casting Linear, SAM's
  decoder, ViT MLPs); one slot, the whole weight.
- ``FusedHost``: a Linear producing equal slices ``[q; k; v]`` (or ``[k; v]``), declared in
  the config's ``fused`` field (default ``{"qkv": 3}``); one slot per enabled slice.
- ``InProjHost`` (in ``inproj_host.py``): any module owning a raw ``in_proj_weight``
  parameter that its forward applies with ``F.linear`` (open_clip's custom ``Attention``).
- ``MHAHost`` (in ``mha_host.py``): ``nn.MultiheadAttention``, q/k/v (and ``o``) slices.
- ``Conv2dHost``: ``nn.Conv2d`` (1x1 and kxk, groups=1); the slot is the kernel
  flattened to ``(C_out, C_in * kh * kw)``.

While merged or disabled a host simply calls its base layer: merged inference costs
exactly what the base model costs. Merging into fp16/bf16 weights keeps a copy of the
original slot weight, so ``unmerge`` restores it bit for bit.
"""

from __future__ import annotations

import abc

import torch
from torch import Tensor, nn

from .method import Method

SLICE_INDEX = {"q": 0, "k": 1, "v": 2}
# slice names of a fused projection with n equal parts
FUSED_SLICES = {3: ("q", "k", "v"), 2: ("k", "v")}
EXACT_DTYPES = (torch.float32, torch.float64)


class Host(nn.Module, abc.ABC):
    kind = "host"

    def __init__(self, base: nn.Module):
        super().__init__()
        self.base = base
        self.adapters = nn.ModuleDict()  # adapter name -> ModuleDict(slot -> Method)
        self.active_names: list[str] = []
        self.merged_names: list[str] = []
        self.frozen: set[str] = set()  # adapters loaded for inference (never made trainable)
        self.configs: dict = {}  # adapter name -> the AdapterConfig given to inject
        self.disabled = False
        self._originals: dict[str, Tensor] = {}  # low-precision slot weights kept while merged

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name in ("base", "adapters"):
                raise
            return getattr(self._modules["base"], name)  # weight, in_features, batch_first, ...

    def train(self, mode: bool = True):
        """Adapters loaded for inference stay in eval mode (dropout off) whatever the model's
        mode, so they never change while another adapter trains beside them."""
        super().train(mode)
        for name in self.frozen & set(self.adapters):
            self.adapters[name].eval()
        return self

    @property
    def merged(self) -> bool:
        return bool(self.merged_names)

    def live(self) -> list[nn.ModuleDict]:
        """Slot dicts of the adapters whose deltas this forward call adds."""
        if self.disabled:
            return []
        return [
            self.adapters[n]
            for n in self.active_names
            if n in self.adapters and n not in self.merged_names
        ]

    @property
    def active(self) -> bool:
        return bool(self.live())

    def slots(self) -> set[str]:
        return {s for slots in self.adapters.values() for s in slots}

    @abc.abstractmethod
    def slot_weight(self, slot: str) -> Tensor:
        """The base weight rows a slot adapts, as a ``(d_out, d_in)`` view."""

    def _delta(self, slot: str, x: Tensor, out_dtype: torch.dtype) -> Tensor | None:
        """Sum of the live adapters' deltas for ``slot``; None when no adapter has it."""
        total = None
        for slots in self.live():
            if slot not in slots:
                continue
            method = slots[slot]
            p = next(method.parameters(), None)
            cast = p is not None and not _autocasting(x)  # autocast picks the matmul dtype
            d = method.delta(x.to(p.dtype) if cast else x).to(out_dtype)
            total = d if total is None else total + d
        return total

    def add(self, name: str, slots: dict[str, Method]) -> None:
        if self.merged:
            raise ValueError(f"cannot add adapter {name!r} to a merged layer: unmerge(model) first")
        self.adapters[name] = nn.ModuleDict(slots)

    @torch.no_grad()
    def merge(self, names: list[str]) -> None:
        """Fold the named adapters' ``delta_weight`` into the base weight."""
        names = [n for n in names if n in self.adapters and n not in self.merged_names]
        quantized = hasattr(self.base, "begin_merge")  # core/quant's QuantLinear
        if quantized and names:
            self.base.begin_merge()  # a float copy the loop below adds to
        for slot in sorted(self.slots()):
            parts = [self.adapters[n][slot] for n in names if slot in self.adapters[n]]
            if not parts:
                continue
            w = self.slot_weight(slot)
            if w.dtype not in EXACT_DTYPES and slot not in self._originals:
                self._originals[slot] = w.clone()  # undo exactly what rounding would blur
            dw = sum(m.delta_weight().float() for m in parts).reshape(w.shape).to(w.device)
            w.copy_((w.float() + dw).to(w.dtype))  # one rounding step, done in float32
        if quantized and names:
            self.base.end_merge()  # keeps the float copy, or re-quantizes it
        self.merged_names += names

    @torch.no_grad()
    def unmerge(self) -> None:
        """Undo every merge: the original weights (bit-exact below float32)."""
        if hasattr(self.base, "restore_codes"):  # a quantized base: its original codes
            self.base.restore_codes()
            self.merged_names = []
            return
        for slot in sorted(self.slots()):
            w = self.slot_weight(slot)
            if slot in self._originals:
                w.copy_(self._originals.pop(slot))
                continue
            parts = [self.adapters[n][slot] for n in self.merged_names if slot in self.adapters[n]]
            if parts:
                w.sub_(sum(m.delta_weight().float() for m in parts).reshape(w.shape).to(w))
        self.merged_names = []

    def extra_repr(self) -> str:
        return (
            f"kind={self.kind}, active={self.active_names}, merged={self.merged_names}, "
            f"disabled={self.disabled}"
        )


class LinearHost(Host):
    kind = "linear"

    def slot_weight(self, slot: str) -> Tensor:
        return self.base.weight

    def forward(self, x: Tensor) -> Tensor:
        out = self.base(x)
        d = self._delta("weight", x, out.dtype)
        return out if d is None else out + d


class Conv2dHost(LinearHost):
    kind = "conv2d"

    def slot_weight(self, slot: str) -> Tensor:
        return self.base.weight.view(self.base.weight.shape[0], -1)


def _autocasting(x: Tensor) -> bool:
    return torch.is_autocast_enabled(x.device.type)


def _cast_once(x: Tensor) -> Tensor:
    """Under autocast, ``x`` in the autocast dtype: each slice's adapter would otherwise
    cast its own copy of a float32 input for its down projection and keep it for the
    backward pass (three copies for q/k/v where one does; bf16 CLIP attention measured
    1.13x PEFT's peak on a GPU before this). The same values the matmul would have cast."""
    if not _autocasting(x) or x.dtype not in (torch.float32, torch.float64):
        return x
    return x.to(torch.get_autocast_dtype(x.device.type))


def fused_delta(host: Host, x: Tensor, out: Tensor, names: tuple[str, ...]) -> Tensor:
    """``out`` plus the per-slice deltas laid out as ``[q; k; v]`` along the last axis."""
    d = out.shape[-1] // len(names)
    x = _cast_once(x) if host.active else x
    parts = [host._delta(s, x, out.dtype) for s in names]
    if all(p is None for p in parts):
        return out
    zeros = out.new_zeros(out.shape[:-1] + (d,))
    return out + torch.cat([zeros if p is None else p for p in parts], -1)


class FusedHost(Host):
    """A Linear whose output is ``n`` equal slices (declared, never guessed)."""

    kind = "fused_qkv"

    def __init__(self, base: nn.Module, n_slices: int = 3):
        super().__init__(base)
        self.slice_names = FUSED_SLICES[n_slices]

    def slot_weight(self, slot: str) -> Tensor:
        d = self.base.out_features // len(self.slice_names)
        i = self.slice_names.index(slot)
        return self.base.weight[i * d : (i + 1) * d]

    def forward(self, x: Tensor) -> Tensor:
        return fused_delta(self, x, self.base(x), self.slice_names)


FusedQKVHost = FusedHost  # the v0.1 name
