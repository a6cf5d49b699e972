"""Group-wise weight quantization: code tables, bit packing, quantize / dequantize rows.

A weight ``W (d_out, d_in)`` is quantized row by row in groups of ``group_size`` consecutive
inputs (each row padded with zeros to ``d_in_p``, a multiple of ``group_size``):

- ``scheme="nf"`` (NormalFloat, QLoRA): per group ``absmax`` (stored float16, ``c``), code
  ``q = argmin_k |w / c - T[k]|`` over the table ``T`` of ``2**bits`` normal quantiles,
  ``w_hat = T[q] c``. ``T`` for ``k`` bits: ``2**(k-1)`` positive quantiles
  ``Phi^-1(linspace(delta, 1/2, 2**(k-1)+1)[:-1])``, ``2**(k-1) - 1`` negative ones
  ``-Phi^-1(linspace(delta, 1/2, 2**(k-1))[:-1])`` and an exact 0, divided by the largest,
  with ``delta = 1 - (1/(2(2**k - 1)) + 1/(2 * 2**k)) / 2`` (QLoRA's NF4 offset 0.9677 for
  ``k = 4``).
- ``scheme="int"`` (asymmetric integer): per group ``step = (max - min) / (2**bits - 1)``
  (float16) and zero point ``z = round(-min / step)`` (uint8, clamped to the code range),
  ``q = clamp(round(w / step) + z, 0, 2**bits - 1)``, ``w_hat = (q - z) step``.

Codes are packed ``8 / bits`` per byte for 2, 4 and 8 bits; 3-bit codes go 8 to 3 bytes
(little-endian bit order). Each row's bytes are contiguous, so a block of rows dequantizes
without touching the rest. Storage per weight: ``bits + 16 / group_size`` (nf) or
``bits + 24 / group_size`` (int) bits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

BITS = (2, 3, 4, 8)
SCHEMES = ("nf", "int")
SCALE_DTYPE = torch.float16


def nf_table(bits: int) -> Tensor:
    """The NormalFloat code table (``2**bits`` values in [-1, 1], sorted, exact 0)."""
    half = 2 ** (bits - 1)
    delta = 1 - 0.5 * (1 / (2 * (2**bits - 1)) + 1 / (2 * 2**bits))
    pos = torch.special.ndtri(torch.linspace(delta, 0.5, half + 1, dtype=torch.float64)[:-1])
    neg = -torch.special.ndtri(torch.linspace(delta, 0.5, half, dtype=torch.float64)[:-1])
    table = torch.cat([pos, neg, torch.zeros(1, dtype=torch.float64)]).sort().values
    return (table / table.max()).float()


def check_spec(bits: int, scheme: str, group_size: int) -> None:
    if bits not in BITS:
        raise ValueError(f"quantize: bits must be one of {BITS}, got {bits!r}")
    if scheme not in SCHEMES:
        raise ValueError(f"quantize: scheme must be one of {SCHEMES}, got {scheme!r}")
    if not isinstance(group_size, int) or group_size < 8 or group_size % 8:
        raise ValueError(f"quantize: group_size must be a multiple of 8 (>= 8), got {group_size!r}")


def pack(codes: Tensor, bits: int) -> Tensor:
    """``(n, m)`` integer codes in ``[0, 2**bits)`` (``m % 8 == 0``) -> ``(n, m * bits / 8)``
    uint8, code ``j`` at bit offset ``j * bits`` of its row."""
    n, m = codes.shape
    if bits in (2, 4, 8):
        per = 8 // bits
        c = codes.to(torch.uint8).reshape(n, m // per, per)
        out = torch.zeros(n, m // per, dtype=torch.uint8, device=codes.device)
        for i in range(per):
            out |= c[..., i] << (bits * i)
        return out
    c = codes.to(torch.int64).reshape(n, m // 8, 8)  # 8 codes = `bits` bytes
    word = torch.zeros(n, m // 8, dtype=torch.int64, device=codes.device)
    for i in range(8):
        word |= c[..., i] << (bits * i)
    shifts = torch.arange(bits, device=codes.device) * 8
    return ((word[..., None] >> shifts) & 255).to(torch.uint8).reshape(n, m // 8 * bits)


def unpack(packed: Tensor, bits: int, m: int) -> Tensor:
    """Inverse of ``pack``: ``(n, m * bits / 8)`` uint8 -> ``(n, m)`` int64 codes."""
    n = packed.shape[0]
    mask = (1 << bits) - 1
    if bits in (2, 4, 8):
        per = 8 // bits
        shifts = torch.arange(per, device=packed.device, dtype=torch.uint8) * bits
        return ((packed[..., None] >> shifts) & mask).reshape(n, m).long()
    b = packed.reshape(n, m // 8, bits).long()
    word = torch.zeros(n, m // 8, dtype=torch.int64, device=packed.device)
    for j in range(bits):
        word |= b[..., j] << (8 * j)
    shifts = torch.arange(8, device=packed.device) * bits
    return ((word[..., None] >> shifts) & mask).reshape(n, m)


@dataclass
class QTensor:
    """A quantized ``(d_out, d_in)`` matrix: packed codes, per-group scales (and zeros)."""

    packed: Tensor  # (d_out, d_in_p * bits / 8) uint8
    scales: Tensor  # (d_out, d_in_p / group_size) float16
    zeros: Tensor | None  # (d_out, d_in_p / group_size) uint8, int scheme only
    bits: int
    scheme: str
    group_size: int
    d_in: int

    @property
    def d_in_p(self) -> int:
        return self.scales.shape[1] * self.group_size

    def nbytes(self) -> int:
        z = 0 if self.zeros is None else self.zeros.numel() * self.zeros.element_size()
        return self.packed.numel() + self.scales.numel() * self.scales.element_size() + z

    def dequantize(self, rows: slice = slice(None), table: Tensor | None = None) -> Tensor:
        """Float32 rows ``W_hat[rows]`` of shape ``(n, d_in)``."""
        return dequantize_rows(
            self.packed[rows], self.scales[rows], None if self.zeros is None else self.zeros[rows],
            self.bits, self.scheme, self.group_size, self.d_in, table,
        )


def _groups(w: Tensor, group_size: int) -> Tensor:
    """``(n, d_in)`` -> zero-padded ``(n, G, group_size)`` float32."""
    n, d_in = w.shape
    d_in_p = math.ceil(d_in / group_size) * group_size
    w = torch.nn.functional.pad(w.float(), (0, d_in_p - d_in))
    return w.reshape(n, d_in_p // group_size, group_size)


def quantize_rows(w: Tensor, bits: int, scheme: str = "nf", group_size: int = 64) -> QTensor:
    """Quantize ``w (d_out, d_in)`` (see the module docstring)."""
    check_spec(bits, scheme, group_size)
    g = _groups(w.detach(), group_size)
    levels = 2**bits
    zeros = None
    if scheme == "nf":
        scale = g.abs().amax(-1).to(SCALE_DTYPE)
        c = scale.float().clamp_min(torch.finfo(SCALE_DTYPE).tiny)[..., None]
        t = nf_table(bits).to(w.device)
        codes = torch.bucketize((g / c).clamp(-1, 1), (t[1:] + t[:-1]) / 2)
    else:
        lo, hi = g.amin(-1).clamp_max(0), g.amax(-1).clamp_min(0)
        scale = ((hi - lo) / (levels - 1)).to(SCALE_DTYPE)
        step = scale.float().clamp_min(torch.finfo(SCALE_DTYPE).tiny)
        zeros = torch.round(-lo / step).clamp(0, levels - 1).to(torch.uint8)
        codes = (torch.round(g / step[..., None]) + zeros[..., None].float()).clamp(0, levels - 1)
    packed = pack(codes.reshape(g.shape[0], -1).long(), bits)
    return QTensor(packed, scale, zeros, bits, scheme, group_size, w.shape[1])


def dequantize_rows(
    packed: Tensor,
    scales: Tensor,
    zeros: Tensor | None,
    bits: int,
    scheme: str,
    group_size: int,
    d_in: int,
    table: Tensor | None = None,
) -> Tensor:
    """Float32 ``(n, d_in)`` rows from their packed codes. For 2, 4 and 8 bits each byte
    indexes a 256-row table of the values it holds, so the only temporaries are an int32
    copy of the packed bytes and the float result (no int64 code per weight): the
    per-step transient memory of the quantized forward and backward stays small."""
    n, groups = scales.shape
    if scheme == "nf":
        values = nf_table(bits).to(packed.device) if table is None else table
    else:
        values = torch.arange(2**bits, dtype=torch.float32, device=packed.device)
    if bits in (2, 4, 8):
        w = byte_table(values, bits)[packed.int()]  # (n, bytes, 8 / bits)
    else:
        w = values[unpack(packed, bits, groups * group_size)]
    w = w.reshape(n, groups, group_size)
    if scheme != "nf":
        w.sub_(zeros.float()[..., None])
    w.mul_(scales.float()[..., None])
    return w.reshape(n, groups * group_size)[:, :d_in]


def byte_table(values: Tensor, bits: int) -> Tensor:
    """``(256, 8 / bits)``: the code values a packed byte holds, in ``pack``'s order."""
    per = 8 // bits
    b = torch.arange(256, device=values.device)
    shifts = torch.arange(per, device=values.device) * bits
    return values[(b[:, None] >> shifts) & ((1 << bits) - 1)]


def fake_quantize(w: Tensor, bits: int, scheme: str = "nf", group_size: int = 64) -> Tensor:
    """``dequantize(quantize(w))``: the float32 matrix the quantized layer computes with."""
    return quantize_rows(w, bits, scheme, group_size).dequantize()


def stored_bits(bits: int, scheme: str, group_size: int) -> float:
    """Bits per weight including the scales (and zero points) of its group."""
    return bits + (16 + (8 if scheme == "int" else 0)) / group_size


@dataclass(frozen=True)
class QuantSpec:
    """How one layer is quantized (what ``absorb`` methods receive)."""

    bits: int = 4
    scheme: str = "nf"
    group_size: int = 64

    def quantize(self, w: Tensor) -> QTensor:
        return quantize_rows(w, self.bits, self.scheme, self.group_size)

    def fake(self, w: Tensor) -> Tensor:
        return self.quantize(w).dequantize()

    def nbytes(self, d_out: int, d_in: int) -> int:
        """Stored bytes of a ``(d_out, d_in)`` matrix (codes, scales, zero points)."""
        groups = math.ceil(d_in / self.group_size)
        per_group = self.group_size * self.bits // 8 + 2 + (1 if self.scheme == "int" else 0)
        return d_out * groups * per_group


def cat_rows(parts: list[QTensor]) -> QTensor:
    """Stack row blocks quantized with the same spec into one ``QTensor``."""
    first = parts[0]
    zeros = None if first.zeros is None else torch.cat([p.zeros for p in parts])
    return QTensor(torch.cat([p.packed for p in parts]), torch.cat([p.scales for p in parts]),
                   zeros, first.bits, first.scheme, first.group_size, first.d_in)
