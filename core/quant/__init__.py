"""Quantized bases: packed 2/3/4/8-bit weights every lorakit host and method sits on.

    from lorakit.core import quantize, save_quantized, load_quantized, model_bytes
    quantize(model, bits=4, scheme="nf", group_size=64, targets=("whisper-attn",))

See ``codes.py`` (the number formats), ``layer.py`` (``QuantLinear``), ``model.py``
(whole-model functions) and ``absorb.py`` (quantization-aware initialisation).
"""

from .codes import QTensor, QuantSpec, fake_quantize, nf_table, pack, quantize_rows, unpack
from .fisher import fisher_diagonal
from .layer import QuantLinear
from .model import (
    QuantReport,
    dequantize,
    load_quantized,
    merge_quantized,
    merged_quantized_copy,
    model_bytes,
    quant_layers,
    quantize,
    save_quantized,
)

__all__ = [
    "QTensor",
    "QuantSpec",
    "QuantLinear",
    "QuantReport",
    "dequantize",
    "fake_quantize",
    "fisher_diagonal",
    "load_quantized",
    "merge_quantized",
    "merged_quantized_copy",
    "model_bytes",
    "nf_table",
    "pack",
    "quant_layers",
    "quantize",
    "quantize_rows",
    "save_quantized",
    "unpack",
]
