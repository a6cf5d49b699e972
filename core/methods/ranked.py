"""``RankedLoRA``: the LoRA-shaped base of the rank-changing methods (see ``core/resize.py``).

``delta(x) = s * B A x`` with ``A (r x d_in)``, ``B (d_out x r)`` (plus per-rank vectors a
subclass declares), ``s`` fixed at construction so a rank change never rescales the
update; rank 0 is allowed (the slot then adds exactly 0). Loading a state dict whose ``A``
has another rank resizes the slot first, so checkpoints and adapter files carry the ranks
in their shapes.
"""

from __future__ import annotations

import math
import zlib

import torch
from torch import Tensor, nn

from ..resize import Resize, resize_param
from .base import FactoredMethod, SlotInfo, kaiming_


class RankedLoRA(FactoredMethod):
    """``delta(x) = s * B diag(gate) A x`` with a resizable rank (``gate`` optional)."""

    rank_changing = True
    rank_vectors: tuple[str, ...] = ()  # per-rank 1-D parameters (SoRA's gate)

    def __init__(self, cfg, slot: SlotInfo):
        super().__init__(cfg, slot)
        self.A = nn.Parameter(kaiming_(torch.empty(self.r, self.d_in)))
        self.B = nn.Parameter(torch.zeros(self.d_out, self.r))
        self.max_rank = min(self.d_out, self.d_in)
        self.resizes: list[Resize] = []

    # --- the update -------------------------------------------------------------------

    def factors(self) -> tuple[Tensor, Tensor]:
        """``(A, B)`` as used in the forward pass (gates folded in); a rank-0 slot gives a
        zero rank-1 pair, so every host computes an exact 0 without empty convolutions."""
        if self.r == 0:
            return self.A.new_zeros(1, self.d_in), self.B.new_zeros(self.d_out, 1)
        return self.A, self.B

    # --- rank changes -------------------------------------------------------------------

    def rank_tensors(self) -> list[tuple[nn.Parameter, int]]:
        """Every parameter with a rank dimension, and that dimension."""
        out = [(self.A, 0), (self.B, 1)]
        return out + [(getattr(self, n), 0) for n in self.rank_vectors]

    def new_rank_values(self, n: int) -> dict[str, Tensor]:
        """Values of ``n`` new ranks: A rows Kaiming, B columns 0 (the output is unchanged).
        The rows are drawn from a generator seeded by (slot name, current rank), never the
        global RNG, so a resumed run grows exactly the ranks the uninterrupted run grew."""
        g = torch.Generator().manual_seed(zlib.crc32(self.slot_name.encode()) * 1009 + self.r)
        a = torch.empty(max(n, 1), self.d_in)
        nn.init.kaiming_uniform_(a, a=math.sqrt(5), generator=g)
        a = a[:n].to(self.A.device, self.A.dtype)
        out = {"A": a, "B": self.B.new_zeros(self.d_out, n)}
        out.update({v: getattr(self, v).new_ones(n) for v in self.rank_vectors})
        return out

    def resize_rank(self, keep: Tensor, new: dict[str, Tensor] | None = None) -> None:
        """Keep ranks ``keep`` (indices) and append the ranks in ``new`` (per tensor name)."""
        keep = keep.flatten().long()
        for p, dim in self.rank_tensors():
            name = next(k for k, v in self._parameters.items() if v is p)
            self.resizes.append(resize_param(p, dim, keep, None if new is None else new[name]))
        self.r = int(self.A.shape[0])

    def set_rank(self, r: int) -> None:
        """Resize to exactly ``r`` ranks (values are then overwritten by a load)."""
        if r == self.r:
            return
        if r < self.r:
            self.resize_rank(torch.arange(r))
        else:
            self.resize_rank(torch.arange(self.r), self.new_rank_values(r - self.r))

    def take_resizes(self) -> list[Resize]:
        out, self.resizes = self.resizes, []
        return out

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        a = state_dict.get(prefix + "A")
        if a is not None and a.dim() == 2 and a.shape[0] != self.r:
            self.set_rank(int(a.shape[0]))
            self.resizes.clear()  # a load is not a training-time resize
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return super().extra_repr() + " (rank-changing)"
