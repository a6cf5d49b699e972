"""``InProjHost``: attention that keeps a raw ``in_proj_weight`` parameter (open_clip's
custom ``Attention``, ``block_type="custom"``), whatever its class.

The host targets the parameter, not the class: it runs the wrapped module's own forward
and intercepts the ``F.linear`` call whose weight *is* ``in_proj_weight`` (and, for the
``o`` slot, the one whose weight is ``out_proj.weight``), adding the per-slice low-rank
deltas to that projection's output. Nothing is re-merged per call, and every variant of
the forward (qk-norm, scaled cosine, masks) keeps working. A forward that never applies
``in_proj_weight`` through ``F.linear`` raises instead of silently skipping the adapters.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor
from torch.overrides import TorchFunctionMode

from .hosts import SLICE_INDEX, Host, fused_delta

QKV = ("q", "k", "v")


class _Intercept(TorchFunctionMode):
    """Adds the host's deltas to the projections its module computes with ``F.linear``."""

    def __init__(self, host: InProjHost):
        super().__init__()
        self.host, self.hits = host, 0
        self.w_in = host.base.in_proj_weight
        out_proj = getattr(host.base, "out_proj", None)
        self.w_out = getattr(out_proj, "weight", None)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func is not F.linear:
            return out
        weight = args[1] if len(args) > 1 else kwargs.get("weight")
        x = args[0] if args else kwargs["input"]
        if weight is self.w_in:
            self.hits += 1
            return fused_delta(self.host, x, out, QKV)
        if self.w_out is not None and weight is self.w_out:
            d = self.host._delta("o", x, out.dtype)
            return out if d is None else out + d
        return out


class InProjHost(Host):
    kind = "in_proj"

    def slot_weight(self, slot: str) -> Tensor:
        if slot == "o":
            return self.base.out_proj.weight
        e = self.base.in_proj_weight.shape[1]
        i = SLICE_INDEX[slot]
        return self.base.in_proj_weight[i * e : (i + 1) * e]

    def forward(self, *args, **kwargs):
        if not self.active:
            return self.base(*args, **kwargs)
        mode = _Intercept(self)
        with mode:
            out = self.base(*args, **kwargs)
        if mode.hits == 0:
            raise ValueError(
                f"{type(self.base).__name__}.forward did not apply in_proj_weight with "
                "F.linear, so lorakit cannot add its adapters there; target its Linear "
                "layers instead"
            )
        return out
