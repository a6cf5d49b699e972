"""Which kernel a ``QuantLinear`` multiplies with: pure torch, or bitsandbytes on CUDA.

    quantize(model, bits=4, backend="auto")      # the default
    backbone: {quantize: {bits: 4, backend: torch}}

``auto``: bitsandbytes' 4-bit kernel (``matmul_4bit``) when the package is importable, the
input is on CUDA and the layer is 4-bit NF with a group size bitsandbytes accepts (64 ...
4096, dividing ``d_in``); pure torch (block-wise dequantization, ``layer.py``) otherwise,
always on the CPU. ``torch``: always pure torch. ``bitsandbytes``: as ``auto``, but asking
for it when it is not installed is a one-line ``ValueError`` at ``quantize`` time. Neither
package is a dependency of lorakit.

The codes are not re-quantized for the kernel: lorakit's NF4 table is bitsandbytes' (the
QLoRA paper's), a group is one of its blocks (row-major), its ``absmax`` is our float16
scale in float32; only the nibble order differs (bitsandbytes keeps the first code in the
high nibble), so both paths multiply by the same ``W_hat``. ``torchao`` is recognised but
not wired: its NF4 tensor double-quantizes the scales, which would change ``W_hat``; asking
for it is a one-line error.
"""

from __future__ import annotations

import importlib.util

import torch
from torch import Tensor

BACKENDS = ("auto", "torch", "bitsandbytes")
FAST = {"bitsandbytes": "bitsandbytes"}  # backend -> the module it imports
BNB_BLOCKS = (64, 128, 256, 512, 1024, 2048, 4096)


def installed(backend: str) -> bool:
    """Whether the backend's package can be imported (without importing it)."""
    return importlib.util.find_spec(FAST[backend]) is not None


def check_backend(backend: str) -> None:
    """A requested backend that is unknown or not installed: one ``ValueError`` line."""
    if backend == "torchao":
        raise ValueError("quantize: backend 'torchao' is not supported (its NF4 double-quantizes "
                         "the scales, changing the weights); use auto, torch or bitsandbytes")
    if backend not in BACKENDS:
        raise ValueError(f"quantize: backend must be one of {BACKENDS}, got {backend!r}")
    if backend in FAST and not installed(backend):
        raise ValueError(f"quantize: backend {backend!r} is not installed (pip install "
                         f"{FAST[backend]}, on a CUDA machine); use backend 'auto' or 'torch'")


def select_backend(requested: str, device: torch.device | str, bits: int, scheme: str,
                   group_size: int, d_in: int) -> str:
    """The kernel a layer uses for an input on ``device``: ``"bitsandbytes"`` or ``"torch"``."""
    if requested == "torch" or torch.device(device).type != "cuda":
        return "torch"
    fits = bits == 4 and scheme == "nf" and group_size in BNB_BLOCKS and d_in % group_size == 0
    if fits and installed("bitsandbytes"):
        return "bitsandbytes"
    return "torch"


def bnb_state(layer, dtype: torch.dtype):
    """``(packed (n/2, 1) uint8, QuantState)``: the layer's own codes in bitsandbytes' layout."""
    import bitsandbytes.functional as bnbf

    p = layer.packed.reshape(-1)
    swapped = ((p & 0x0F) << 4) | (p >> 4)  # first code of each byte into the high nibble
    state = bnbf.QuantState(
        absmax=layer.scales.float().reshape(-1).contiguous(),
        shape=torch.Size((layer.out_features, layer.in_features)),
        code=bnbf.get_4bit_type("nf4", device=p.device),
        blocksize=layer.group_size,
        quant_type="nf4",
        dtype=dtype,
    )
    return swapped.reshape(-1, 1).contiguous(), state


def bnb_matmul(layer, x: Tensor) -> Tensor:
    """``x W_hat^T`` by bitsandbytes' 4-bit kernel (gradients flow to ``x``)."""
    import bitsandbytes as bnb

    key = (layer.packed.data_ptr(), x.dtype)
    if getattr(layer, "_bnb_key", None) != key:  # rebuilt when the codes or dtype change
        layer._bnb, layer._bnb_key = bnb_state(layer, x.dtype), key
    packed, state = layer._bnb
    return bnb.matmul_4bit(x, packed.t(), quant_state=state)
