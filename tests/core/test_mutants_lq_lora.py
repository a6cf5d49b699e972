"""LQ-LoRA (``core/methods/lq_lora.py``) pinned where mutation testing (``bash .ci/mutate
core/methods/lq_lora.py``) found it untested: ``layer_error`` (what the bit-allocation ILP
minimises) adds the *squared* error of the rows no slot adapts, plainly quantized."""

import pytest
import torch

from lorakit.core.methods.lq_lora import LQLoRAConfig, layer_error, lq_decompose
from lorakit.core.quant import QuantSpec, fake_quantize
from lorakit.core.quant.absorb import LayerWeights


def test_layer_error_is_the_sum_of_squared_errors_of_slots_and_plain_rows():
    torch.manual_seed(0)
    w = torch.randn(10, 16)
    spec, cfg = QuantSpec(bits=2, group_size=8), LQLoRAConfig(r=2, lq_iters=3)
    plain = float((w - fake_quantize(w, 2, "nf", 8)).pow(2).sum())
    assert layer_error(LayerWeights("x", w, {}), spec, cfg) == pytest.approx(plain, rel=1e-5)
    d = lq_decompose(w[:4], 2, spec, 3)  # the slot's rows: the kept pair's squared error
    slot = float((w[:4] - d.q.dequantize() - d.b @ d.a).pow(2).sum())
    rest = float((w[4:] - fake_quantize(w[4:], 2, "nf", 8)).pow(2).sum())
    got = layer_error(LayerWeights("x", w, {"weight": slice(0, 4)}), spec, cfg)
    assert got == pytest.approx(slot + rest, rel=1e-4)
