"""New hosts against hand-written references: raw in_proj attention, declared fused
projections, nn.TransformerEncoderLayer's fast path, FoRA with a class token."""

import copy

import pytest
import torch
from torch import nn

from lorakit.core import inject, make_config, methods, named_methods
from lorakit.core.contract import perturb
from lorakit.core.zoo import RawInProjAttention

QKV = ("q", "k", "v")


@torch.no_grad()
def merged_reference(model: nn.Module) -> nn.Module:
    """A plain copy of the base model with every delta added to its weight by hand."""
    ref = copy.deepcopy(model)
    for name, slot, m in named_methods(model):
        host = ref.get_submodule(name)
        host.slot_weight(slot).add_(m.delta_weight().reshape(host.slot_weight(slot).shape))
    for name, _, _ in named_methods(model):
        parent, _, child = name.rpartition(".")
        holder = ref.get_submodule(parent) if parent else ref
        if hasattr(getattr(holder, child), "base"):
            setattr(holder, child, getattr(holder, child).base)
    return ref


def test_raw_in_proj_attention_equals_merged_weights():
    torch.manual_seed(0)
    holder = nn.Module()
    holder.attn = RawInProjAttention(32, heads=4)
    holder.forward = lambda x: holder.attn(x)
    report = inject(holder, make_config("lora", r=2, targets=("attn",), slices=("q", "v", "o")))
    assert report.layers[0].host == "in_proj"
    assert sorted(report.layers[0].slots) == ["o", "q", "v"]
    perturb(holder)
    ref = merged_reference(holder)
    x = torch.randn(2, 7, 32)
    torch.testing.assert_close(holder.attn(x), ref.attn(x), rtol=1e-5, atol=1e-5)


def test_open_clip_custom_attention_is_adapted():
    transformer = pytest.importorskip("open_clip.transformer")
    torch.manual_seed(0)
    holder = nn.Module()
    holder.attn = transformer.Attention(32, num_heads=4)  # raw in_proj_weight, no nn.MHA
    report = inject(holder, make_config("lora", r=2, targets=("attn",)))
    assert report.layers[0].host == "in_proj"
    perturb(holder)
    ref = merged_reference(holder)
    x = torch.randn(2, 5, 32)
    out = holder.attn(x)
    assert (out - copy.deepcopy(holder.attn.base)(x)).abs().max() > 1e-3
    torch.testing.assert_close(out, ref.attn(x), rtol=1e-5, atol=1e-5)


class MatmulAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.in_proj_weight = nn.Parameter(torch.randn(24, 8))

    def forward(self, x):
        return (x @ self.in_proj_weight.T)[..., :8]


def test_in_proj_not_applied_with_linear_is_an_error_not_silence():
    holder = nn.Module()
    holder.attn = MatmulAttention()
    inject(holder, make_config("lora", r=2, targets=("attn",)))
    with pytest.raises(ValueError, match="did not apply in_proj_weight with F.linear"):
        holder.attn(torch.randn(1, 3, 8))


class GQA(nn.Module):
    """q has 32 outputs, k and v 8 each: 48 divides by 3, but the slices are not equal."""

    def __init__(self, name="qkv_proj"):
        super().__init__()
        self.name = name
        setattr(self, name, nn.Linear(16, 48))

    def forward(self, x):
        return getattr(self, self.name)(x)


def test_fused_projections_are_declared_never_guessed():
    report = inject(GQA(), make_config("lora", r=2, targets=("qkv_proj",)))
    assert report.layers[0].host == "linear"  # not declared: one plain Linear
    report = inject(GQA("qkv"), make_config("lora", r=2, targets=("qkv",), fused={}))
    assert report.layers[0].host == "linear"  # the default entry can be dropped for GQA
    for name in ("qkv_proj", "Wqkv", "c_attn"):
        model = GQA(name)
        cfg = make_config("lora", r=2, targets=(name,), fused={name: 3}, slices=("q", "v"))
        report = inject(model, cfg)
        assert report.layers[0].host == "fused_qkv"
        assert report.layers[0].slots == {"q": (16, 16), "v": (16, 16)}
        perturb(model)
        x = torch.randn(3, 16)
        ref = merged_reference(model)
        torch.testing.assert_close(model(x), ref(x), rtol=1e-5, atol=1e-5)
        # the k rows are untouched
        base = getattr(model, name).base
        torch.testing.assert_close(model(x)[:, 16:32], (x @ base.weight.T + base.bias)[:, 16:32])
    model = nn.Sequential()
    model.add_module("kv", nn.Linear(16, 32))
    report = inject(model, make_config("lora", r=2, targets=("kv",), fused={"kv": 2}))
    assert report.layers[0].slots == {"k": (16, 16), "v": (16, 16)}
    with pytest.raises(ValueError, match="declared fused with 3 slices, but its 32 outputs"):
        inject(_qkv32(), make_config("lora", r=2, targets=("qkv",)))


def _qkv32():
    m = nn.Module()
    m.qkv = nn.Linear(4, 32)
    return m


@pytest.mark.parametrize("padding", [False, True])
def test_transformer_encoder_fast_path_never_skips_adapters(padding):
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, batch_first=True)
    model = nn.TransformerEncoder(layer, 2, enable_nested_tensor=True).eval()
    report = inject(model, make_config("lora", r=2, targets=(r".*self_attn", r".*linear1")))
    assert any("fast path disabled" in n for n in report.notes)
    perturb(model)
    ref = merged_reference(model).eval()
    x = torch.randn(2, 5, 16)
    mask = torch.tensor([[False] * 5, [False] * 3 + [True] * 2]) if padding else None
    with torch.no_grad():  # the conditions under which PyTorch takes its fused fast path
        out = model(x, src_key_padding_mask=mask)
        want = ref(x, src_key_padding_mask=mask)
    if padding:
        out, want = out[0], want[0]  # padded rows: nested-tensor path fills zeros
    torch.testing.assert_close(out, want, rtol=1e-4, atol=1e-4)


def test_fora_on_vit_tokens_with_a_class_token():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 16))
    inject(model, make_config("fora", r=2, grid=(3, 4), targets=("0",)))
    perturb(model)
    m = methods(model)[0]
    tokens = torch.randn(2, 1 + 12, 16)  # class token + 3x4 grid: prefix inferred
    grid_part = m.delta(tokens[:, 1:].reshape(2, 3, 4, 16)).reshape(2, 12, 16)
    lora_part = m.s * (tokens[:, :1] @ m.A.T) @ m.B.T  # non-grid tokens: plain LoRA
    torch.testing.assert_close(m.delta(tokens), torch.cat([lora_part, grid_part], 1))
    model2 = nn.Sequential(nn.Linear(16, 16))
    inject(model2, make_config("fora", r=2, grid=(3, 4), prefix_tokens=2, targets=("0",)))
    assert model2(torch.randn(1, 14, 16)).shape == (1, 14, 16)  # two register tokens
    with pytest.raises(ValueError, match="with prefix_tokens=2 needs 14"):
        model2(torch.randn(1, 13, 16))
