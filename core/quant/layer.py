"""``QuantLinear``: an ``nn.Linear`` whose weight is stored as packed codes + group scales.

It is an ``nn.Linear`` subclass, so every lorakit host (``linear``, ``fused_qkv``) and every
method sits on it unchanged: ``.weight`` is the dequantized ``(d_out, d_in)`` float32 matrix
(built on access, never stored), ``.bias`` stays a float parameter (frozen with the base).

Forward: ``y = x W_hat^T + b``, dequantized ``block_rows`` output rows at a time, through
an autograd function that saves nothing but the input's shape: the backward pass
(``dL/dx = dL/dy W_hat``, needed when an adapter sits below this layer) dequantizes the
blocks again, so training never holds a float copy of the base weight (QLoRA's trade:
memory for a second dequantization).

The kernel (``backend``, see ``backends.py``): pure torch as above, or bitsandbytes'
4-bit matmul on the same codes when it is installed and the input is on CUDA.

Merging an adapter into a quantized layer (``lorakit.core.merge`` calls ``begin_merge`` /
``end_merge`` through the host): ``merge_mode="dequantize"`` (default) keeps a float32
copy ``W_hat + dW`` while merged (exact, the memory of a float layer); ``"requantize"``
re-quantizes ``W_hat + dW`` into new codes and records the Frobenius error
``||Q(W_hat + dW) - (W_hat + dW)||`` in ``merge_error``. ``restore_codes`` (unmerge)
brings back the original codes bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .backends import bnb_matmul, select_backend
from .codes import QTensor, check_spec, dequantize_rows, nf_table, quantize_rows

BLOCK_ELEMENTS = 1 << 21  # dequantize at most ~2M weights (8 MB float32) at once


class _QuantMatmul(torch.autograd.Function):
    """``x W_hat^T`` with ``W_hat`` rebuilt block by block in forward and backward."""

    @staticmethod
    def forward(ctx, x: Tensor, layer: QuantLinear) -> Tensor:
        ctx.layer = layer
        if layer.block_rows >= layer.out_features:  # one block: no output copy
            return F.linear(x, layer.dequantize(slice(None)).to(x.dtype))
        out = x.new_empty(x.shape[:-1] + (layer.out_features,))
        for rows in layer.blocks():
            out[..., rows] = F.linear(x, layer.dequantize(rows).to(x.dtype))
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        layer = ctx.layer
        gx = None
        for rows in layer.blocks():
            part = grad[..., rows] @ layer.dequantize(rows).to(grad.dtype)
            gx = part if gx is None else gx + part
        return gx, None


class QuantLinear(nn.Linear):
    """A frozen quantized Linear (``bits`` 2/3/4/8, ``scheme`` nf/int, groups along inputs)."""

    # ``.weight`` builds a dense float copy: code that multiplies by a layer's weight itself
    # (``MHAHost``'s out_proj) calls the layer instead, so training never saves that copy
    weight_is_computed = True

    def __init__(self, q: QTensor, out_features: int, bias: Tensor | None = None):
        nn.Module.__init__(self)  # no float weight parameter
        self.in_features, self.out_features = q.d_in, out_features
        self.bits, self.scheme, self.group_size = q.bits, q.scheme, q.group_size
        check_spec(self.bits, self.scheme, self.group_size)
        self.register_buffer("packed", q.packed)
        self.register_buffer("scales", q.scales)
        self.register_buffer("zeros", q.zeros)
        table = nf_table(self.bits).to(q.packed.device) if q.scheme == "nf" else None
        self.register_buffer("table", table, persistent=False)
        self.register_buffer("dense", None, persistent=False)  # float copy while merged
        if bias is None:
            self.register_parameter("bias", None)
        else:
            self.bias = nn.Parameter(bias.detach().clone().float(), requires_grad=False)
        self.block_rows = max(1, BLOCK_ELEMENTS // max(q.d_in, 1))
        self.merge_mode = "dequantize"
        self.merge_error: float | None = None
        self.backend = "auto"  # backends.py: auto | torch | bitsandbytes
        self.active_backend: str | None = None  # the kernel of the last forward
        self._saved: tuple | None = None  # original codes while merged

    @classmethod
    def from_linear(
        cls, linear: nn.Linear, bits: int = 4, scheme: str = "nf", group_size: int = 64
    ) -> QuantLinear:
        q = quantize_rows(linear.weight.detach(), bits, scheme, group_size)
        return cls(q, linear.out_features, linear.bias)

    @property
    def weight(self) -> Tensor:  # type: ignore[override]
        """``W_hat (d_out, d_in)`` float32 (the merged float copy while merged)."""
        return self.dense if self.dense is not None else self.dequantize(slice(None))

    @property
    def qtensor(self) -> QTensor:
        return QTensor(self.packed, self.scales, self.zeros, self.bits, self.scheme,
                       self.group_size, self.in_features)

    def dequantize(self, rows: slice) -> Tensor:
        return dequantize_rows(
            self.packed[rows], self.scales[rows],
            None if self.zeros is None else self.zeros[rows],
            self.bits, self.scheme, self.group_size, self.in_features, self.table,
        )

    def blocks(self):
        for i in range(0, self.out_features, self.block_rows):
            yield slice(i, min(i + self.block_rows, self.out_features))

    def set_codes(self, q: QTensor) -> None:
        """Replace the stored codes (same shape and spec)."""
        self.packed, self.scales, self.zeros = q.packed, q.scales, q.zeros
        self.bits, self.scheme, self.group_size = q.bits, q.scheme, q.group_size

    def nbytes(self) -> int:
        """Bytes of the stored weight (codes, scales, zero points; bias not included)."""
        return self.qtensor.nbytes()

    def forward(self, x: Tensor) -> Tensor:
        if self.dense is not None:
            return F.linear(x, self.dense.to(x.dtype), self.bias)
        self.active_backend = select_backend(self.backend, x.device, self.bits, self.scheme,
                                             self.group_size, self.in_features)
        if self.active_backend == "bitsandbytes":
            out = bnb_matmul(self, x)
        else:
            out = _QuantMatmul.apply(x, self)
        return out if self.bias is None else out + self.bias.to(out.dtype)

    # -- merging (called by lorakit's hosts) ------------------------------------------
    @torch.no_grad()
    def begin_merge(self) -> None:
        """Hold a float32 ``W_hat`` that the host adds ``dW`` to in place."""
        if self._saved is None:
            self._saved = (self.packed.clone(), self.scales.clone(),
                           None if self.zeros is None else self.zeros.clone())
        if self.dense is None:
            self.dense = self.dequantize(slice(None))

    @torch.no_grad()
    def end_merge(self) -> None:
        if self.merge_mode == "dequantize":
            return
        if self.merge_mode != "requantize":
            raise ValueError(
                f"merge_mode must be 'dequantize' or 'requantize', got {self.merge_mode!r}"
            )
        target = self.dense
        self.set_codes(quantize_rows(target, self.bits, self.scheme, self.group_size))
        self.dense = None
        self.merge_error = float(torch.linalg.norm(self.weight - target))

    @torch.no_grad()
    def restore_codes(self) -> None:
        """Undo every merge: the codes from before the first merge, bit for bit."""
        if self._saved is not None:
            self.packed, self.scales, self.zeros = self._saved
        self._saved, self.dense, self.merge_error = None, None, None

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}, bits={self.bits}, scheme={self.scheme}, "
            f"group_size={self.group_size}"
        )


@dataclass
class QuantLayer:
    name: str
    shape: tuple[int, int]
    bits: int
    nbytes: int
    rel_error: float  # ||W - W_hat|| / ||W|| of the plain quantization
    rel_error_adapted: float | None = None  # ||W - W_hat - dW|| / ||W|| after absorb


def set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)
