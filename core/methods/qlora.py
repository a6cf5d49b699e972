"""QLoRA-style LoRA (Dettmers et al. 2023): LoRA (``B = 0``) on a quantized, frozen base.

``h = Q(W0) x + s B A dropout(x)`` with ``Q(W0)`` the base stored as 4-bit NormalFloat
codes + float16 group scales (``lorakit.core.quantize(model, bits=4, scheme="nf",
group_size=64)``, a ``QuantLinear`` host); the adapter is exactly LoRA's, so on a float base
it *is* LoRA. The recipe: ``quantize`` the backbone first, then ``inject`` ``qlora``.
Gradients reach the input through the dequantized codes (``QuantLinear``'s backward
dequantizes again instead of storing a float weight). lorakit's reading: QLoRA's double
quantization of the scales (8-bit scales of scales) and paged optimizers are not
implemented; scales stay float16 (0.25 extra bits per weight at group 64, ``quantize``'s
``group_size``).
Trainable per slot: ``r * (d_in + d_out)``. Mergeable: into a float copy (``merge``) or
re-quantized (``merge_quantized``, error reported). Defaults: r=8, alpha=8 (s=1), dropout 0,
A Kaiming-uniform(a=sqrt(5)), B = 0.
"""

from __future__ import annotations

from dataclasses import dataclass

from .lora import LoRA, LoRAConfig


@dataclass
class QLoRAConfig(LoRAConfig):
    method = "qlora"


class QLoRA(LoRA):
    name = "qlora"
    formula = "r*(d_in + d_out) per layer (base: quantize(model, bits=4, scheme='nf'))"
