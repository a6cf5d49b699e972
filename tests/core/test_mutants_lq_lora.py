"""LQ-LoRA (``core/methods/lq_lora.py``) pinned where mutation testing (``bash .ci/mutate
core/methods/lq_lora.py``) found it untested: the defaults and limits of the config;
``lq_decompose``'s default of 20 steps and its stop only when the error *grows* (equal errors
go on); ``layer_error`` (what the bit-allocation ILP minimises), the squared errors of the
adapted and the plainly quantized rows; the bits per weight the ILP's note reports."""

from types import SimpleNamespace

import pytest
import torch

from lorakit.core import make_config
from lorakit.core.methods.lq_lora import LQLoRA, LQLoRAConfig, layer_error, lq_decompose
from lorakit.core.quant import QuantSpec, fake_quantize
from lorakit.core.quant.absorb import LayerWeights


def test_defaults_and_limits():
    cfg = make_config("lq_lora")
    assert (cfg.lq_iters, cfg.budget_bits, cfg.candidate_bits) == (20, None, (2, 3, 4, 8))
    assert make_config("lq_lora", lq_iters=1, budget_bits=0.5).lq_iters == 1
    for bad, match in (({"lq_iters": 0}, "lq_iters"), ({"lq_iters": -1}, "lq_iters"),
                       ({"lq_iters": 2.0}, "lq_iters"), ({"candidate_bits": (5,)}, "candidate"),
                       ({"candidate_bits": ()}, "candidate"), ({"budget_bits": 0}, "budget"),
                       ({"budget_bits": -1.0}, "budget")):
        with pytest.raises(ValueError, match=match):
            make_config("lq_lora", **bad)


def test_equal_errors_go_on_for_the_default_20_steps():
    """A stand-in quantizer that returns 0: every step decomposes the same ``W``, so every
    error is the same number (``||W - SVD_2(W)||``) and the loop never stops early."""
    zero = SimpleNamespace(quantize=lambda x: SimpleNamespace(dequantize=lambda: torch.zeros_like(x)))
    torch.manual_seed(0)
    w = torch.randn(8, 12)
    d = lq_decompose(w, 2, zero)
    u, s, vh = torch.linalg.svd(w.double())
    want = float(torch.linalg.norm(w.double() - (u[:, :2] * s[:2]) @ vh[:2]))
    assert len(d.errors) == 20 and len(set(d.errors)) == 1
    assert d.errors[0] == pytest.approx(want, rel=1e-5)


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


def test_the_ilp_note_reports_the_bits_per_weight_it_used():
    torch.manual_seed(0)
    layers = [LayerWeights(f"l{i}", torch.randn(8, 16) * (1 + 4 * i), {"weight": slice(0, 8)})
              for i in range(3)]
    spec = QuantSpec(bits=4, group_size=16)  # 2 bits: 3 per weight, 4 bits: 5
    cfg = LQLoRAConfig(r=1, lq_iters=2, budget_bits=4.0, candidate_bits=(2, 4))
    bits, notes = LQLoRA.plan_bits(layers, spec, cfg)
    assert set(bits) == {"l0", "l1", "l2"} and len(set(bits.values())) == 2
    stored = sum(QuantSpec(bits=bits[x.name], group_size=16).nbytes(8, 16) for x in layers)
    used = 8 * stored / (3 * 8 * 16)
    assert used <= 4.0
    assert notes == [f"lq_lora ILP: {used:.3f} of 4.0 bits per weight used; "
                     f"bits {sorted(bits.values())}"]
