"""The quantized base layer: bit packing, NF4 / int codes against hand-written references,
QuantLinear's forward / backward, save / load, merge, bytes."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lorakit.core import (
    dequantize,
    inject,
    load_quantized,
    make_config,
    merge,
    merge_quantized,
    model_bytes,
    quantize,
    save_quantized,
    unmerge,
)
from lorakit.core.contract import perturb
from lorakit.core.quant import QuantLinear, nf_table, pack, quantize_rows, unpack
from lorakit.core.zoo import build

# NF4 as printed in the QLoRA paper (Dettmers et al. 2023, appendix E)
NF4_PAPER = [
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
]


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_pack_unpack_round_trip_exact(bits):
    g = torch.Generator().manual_seed(bits)
    codes = torch.randint(0, 2**bits, (7, 128), generator=g)
    codes[0] = 2**bits - 1  # all-ones codes: every bit of every byte set
    packed = pack(codes, bits)
    assert packed.dtype == torch.uint8 and packed.shape == (7, 128 * bits // 8)
    assert torch.equal(unpack(packed, bits, 128), codes)


def test_pack_layout_is_little_endian_by_code():
    two = pack(torch.tensor([[1, 2, 3, 0, 0, 0, 0, 0]]), 2)
    assert two[0].tolist() == [1 | 2 << 2 | 3 << 4, 0]
    three = pack(torch.tensor([[7, 1, 0, 0, 0, 0, 0, 5]]), 3)  # bits 0-2, 3-5, ..., 21-23
    word = 7 | 1 << 3 | 5 << 21
    assert three[0].tolist() == [word & 255, word >> 8 & 255, word >> 16 & 255]


def test_nf4_table_is_the_papers():
    assert torch.allclose(nf_table(4), torch.tensor(NF4_PAPER), atol=2e-7)
    for bits in (2, 3, 8):  # same construction: 2**bits sorted values, exact 0, ends +-1
        t = nf_table(bits)
        assert t.numel() == 2**bits and (t == 0).sum() == 1
        assert t[0] == -1 and t[-1] == 1 and bool((t[1:] > t[:-1]).all())


def nf4_reference(w, group):
    """NF4 written out: per group absmax (float16), nearest table value."""
    table = torch.tensor(NF4_PAPER)
    out = torch.empty_like(w)
    for i in range(w.shape[0]):
        for j in range(0, w.shape[1], group):
            block = w[i, j : j + group]
            c = block.abs().max().half().float()
            idx = (block[:, None] / c - table[None]).abs().argmin(1)
            out[i, j : j + group] = table[idx] * c
    return out


def int_reference(w, bits, group):
    out = torch.empty_like(w)
    top = 2**bits - 1
    for i in range(w.shape[0]):
        for j in range(0, w.shape[1], group):
            block = w[i, j : j + group]
            lo, hi = min(block.min().item(), 0.0), max(block.max().item(), 0.0)
            step = torch.tensor((hi - lo) / top).half().float()
            zero = torch.round(-lo / step).clamp(0, top)
            q = (torch.round(block / step) + zero).clamp(0, top)
            out[i, j : j + group] = (q - zero) * step
    return out


def test_dequantized_weights_equal_hand_written_references():
    w = torch.randn(6, 96, generator=torch.Generator().manual_seed(0)) * 0.05
    w[2, 5] = 0.9  # an outlier group
    # the computed table differs from the printed one in the 7th digit only
    nf4 = quantize_rows(w, 4, "nf", 32).dequantize()
    assert torch.allclose(nf4, nf4_reference(w, 32), rtol=0, atol=1e-6)
    for bits in (2, 3, 4, 8):
        got = quantize_rows(w, bits, "int", 32).dequantize()
        assert torch.allclose(got, int_reference(w, bits, 32), atol=1e-7), bits


def test_padding_rows_not_multiple_of_group():
    w = torch.randn(3, 40)
    q = quantize_rows(w, 4, "nf", 16)  # 40 -> 48 padded inputs
    assert q.dequantize().shape == (3, 40)
    ref = nf4_reference(F.pad(w, (0, 8)), 16)[:, :40]
    assert torch.allclose(q.dequantize(), ref, rtol=0, atol=1e-6)


def test_quantlinear_forward_and_backward_blockwise():
    lin = nn.Linear(48, 20)
    q = QuantLinear.from_linear(lin, bits=3, scheme="int", group_size=16)
    q.block_rows = 7  # 3 blocks: 7 + 7 + 6 rows
    x = torch.randn(2, 5, 48, requires_grad=True)
    y = q(x)
    ref_x = x.detach().clone().requires_grad_(True)
    ref = F.linear(ref_x, q.weight, q.bias)
    assert torch.allclose(y, ref, atol=1e-6)
    g = torch.randn_like(y)
    y.backward(g)
    ref.backward(g)
    assert torch.allclose(x.grad, ref_x.grad, atol=1e-6)
    assert isinstance(q, nn.Linear) and not q.bias.requires_grad
    assert [n for n, _ in q.named_parameters()] == ["bias"]  # no float weight is stored


def test_save_load_quantized_base(tmp_path):
    model, x, _, _ = build("fused_qkv")
    quantize(model, bits=3, scheme="int", group_size=16)
    path = save_quantized(model, tmp_path / "base.safetensors")
    assert path.read_bytes()[:8] != b"\x80\x02\x8a\x0a"  # not a pickle
    fresh, _, _, _ = build("fused_qkv", seed=5)  # other float weights: all replaced
    load_quantized(fresh, path)
    assert isinstance(fresh.qkv, QuantLinear) and fresh.qkv.bits == 3
    assert torch.equal(fresh(x), model(x))
    other, _, _, _ = build("linear")
    with pytest.raises(ValueError, match="has layer qkv"):
        load_quantized(other, path)


def test_save_load_keeps_top_level_tensors(tmp_path):
    """A model's own parameters (CLIP's ``logit_scale``) are saved under their plain name."""
    model, x, _, _ = build("linear")
    model.scale = nn.Parameter(torch.tensor(2.5))
    quantize(model, bits=4, group_size=16)
    path = save_quantized(model, tmp_path / "base.safetensors")
    fresh, _, _, _ = build("linear", seed=5)
    fresh.scale = nn.Parameter(torch.tensor(0.0))
    load_quantized(fresh, path)
    assert float(fresh.scale) == 2.5 and torch.equal(fresh(x), model(x))


def test_merge_into_dense_copy_and_requantized_codes():
    model, x, targets, slices = build("fused_qkv")
    quantize(model, bits=4, group_size=16)
    inject(model, make_config("lora", r=2, alpha=4.0, targets=targets, slices=slices))
    perturb(model)
    host = model.qkv
    codes = host.base.packed.clone()
    w_hat = host.base.weight.clone()
    adapted = model(x)
    merge(model)  # default: a float copy W_hat + dW while merged
    assert torch.allclose(model(x), adapted, atol=1e-5)
    unmerge(model)
    assert host.base.dense is None and torch.equal(host.base.packed, codes)
    errors = merge_quantized(model)
    target = w_hat.clone()
    d = host.base.out_features // 3
    for i, s in enumerate(("q", "k", "v")):
        if s in host.adapters["default"]:
            target[i * d : (i + 1) * d] += host.adapters["default"][s].delta_weight().detach()
    expect = torch.linalg.norm(quantize_rows(target, 4, "nf", 16).dequantize() - target)
    assert errors == {"qkv": pytest.approx(float(expect), rel=1e-5)}
    assert host.base.dense is None and not torch.equal(host.base.packed, codes)
    unmerge(model)
    assert torch.equal(host.base.packed, codes) and torch.allclose(model(x), adapted, atol=1e-6)


def test_dequantize_and_bytes():
    lin = nn.Sequential(nn.Linear(256, 128, bias=False), nn.ReLU(), nn.Linear(128, 256))
    x = torch.randn(3, 256)
    quantize(lin, bits=4, group_size=64)
    quantized = lin(x)
    b = model_bytes(lin)
    # 4-bit codes + one float16 scale per 64 weights: (0.5 + 2/64) / 4 of fp32
    assert b["quantized_layers"] == 2 * 256 * 128 * (0.5 + 2 / 64)
    assert b["other"] == 256 * 4 and b["dense_total"] == (2 * 256 * 128 + 256) * 4
    dequantize(lin)
    assert type(lin[0]) is nn.Linear and torch.allclose(lin(x), quantized, atol=1e-6)


def test_bad_input_is_one_clear_line():
    model, _, targets, _ = build("linear")
    with pytest.raises(ValueError, match="bits must be one of"):
        quantize(model, bits=5)
    with pytest.raises(ValueError, match="multiple of 8"):
        quantize(model, group_size=12)
    with pytest.raises(ValueError, match="match no nn.Linear"):
        quantize(model, targets=("nothing_here",))
    inject(model, make_config("lora", r=2, targets=targets))
    with pytest.raises(ValueError, match="already has adapters"):
        quantize(model)
