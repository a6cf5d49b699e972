"""Training memory on a quantized base: QLoRA's gradients through the codes equal a float
reference, the autograd graph keeps no dense copy of a quantized weight, and ``quantize``
lets go of the float weights it replaces."""

import gc
import weakref

import pytest
import torch
from torch import nn

from lorakit.core import inject, make_config, quantize
from lorakit.core.contract import perturb
from lorakit.core.quant import QuantLinear

D_IN, D_OUT = 64, 96  # the weight (6,144 values) is larger than any activation below


def _pair(bits: int, scheme: str, block_rows: int):
    """A QLoRA model on a quantized Linear and the same LoRA on a float Linear holding the
    dequantized weight (the reference), adapters equal and perturbed (B != 0)."""
    torch.manual_seed(bits)
    model = nn.Sequential(nn.Linear(D_IN, D_OUT))
    quantize(model, bits=bits, scheme=scheme, group_size=16)
    model[0].block_rows = block_rows  # several blocks forward and backward when < D_OUT
    ref = nn.Sequential(nn.Linear(D_IN, D_OUT))
    with torch.no_grad():
        ref[0].weight.copy_(model[0].weight)
        ref[0].bias.copy_(model[0].bias)
    ref.requires_grad_(False)
    cfg = make_config("qlora", r=4, alpha=8.0, targets=("0",))
    inject(model, cfg)
    inject(ref, cfg)
    perturb(model)
    ref.load_state_dict(model.state_dict(), strict=False)
    return model, ref


def _adapter_grads(model) -> dict[str, torch.Tensor]:
    return {n: p.grad for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("bits,scheme,block_rows", [(4, "nf", 1000), (4, "nf", 20),
                                                    (3, "int", 7), (2, "nf", 50)])
def test_qlora_gradients_equal_the_float_reference(bits, scheme, block_rows):
    """d loss / d input and d loss / d (A, B) through the quantized layer (dequantized
    block by block again in backward) equal those of a float layer with W_hat."""
    model, ref = _pair(bits, scheme, block_rows)
    assert isinstance(model[0].base, QuantLinear)
    x = torch.randn(2, 3, D_IN, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    g = torch.randn(2, 3, D_OUT)
    y, y_ref = model(x), ref(x_ref)
    torch.testing.assert_close(y, y_ref)
    y.backward(g)
    y_ref.backward(g)
    torch.testing.assert_close(x.grad, x_ref.grad)
    grads, grads_ref = _adapter_grads(model), _adapter_grads(ref)
    assert set(grads) == set(grads_ref) and len(grads) == 2
    for name, grad in grads.items():
        assert grad is not None and grad.abs().sum() > 0
        torch.testing.assert_close(grad, grads_ref[name])
    assert all(t.grad is None for t in model[0].base.parameters())  # frozen: no weight grad


def _largest_saved(model, x) -> int:
    """The most values in one tensor autograd keeps for ``model(x)``'s backward pass."""
    sizes = []

    def pack(t):
        sizes.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = model(x)
    y.sum().backward()
    return max(sizes)


@pytest.mark.parametrize("block_rows", [1000, 20])
def test_qlora_graph_saves_no_dense_weight(block_rows):
    """The quantized layer's backward re-dequantizes: nothing of the weight's size is kept
    (the float reference keeps its weight, so the hook does see a weight when there is one)."""
    model, ref = _pair(4, "nf", block_rows)
    x = torch.randn(2, 3, D_IN, requires_grad=True)
    assert _largest_saved(ref, x) >= D_OUT * D_IN
    assert _largest_saved(model, x) < D_OUT * D_IN


def test_quantize_frees_the_float_weights():
    """After ``quantize`` nothing holds the replaced float weights (their memory goes back)."""
    model = nn.Sequential(nn.Linear(D_IN, D_OUT), nn.ReLU(), nn.Linear(D_OUT, D_IN))
    refs = [weakref.ref(model[i].weight) for i in (0, 2)]
    report = quantize(model, bits=4, group_size=16)
    gc.collect()
    assert all(r() is None for r in refs)
    assert isinstance(model[0], QuantLinear) and len(report.layers) == 2


class Attn(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = nn.MultiheadAttention(D_IN, 4, batch_first=True)

    def forward(self, x):
        return self.attn(x, x, x, need_weights=False)[0]


def test_attention_host_saves_no_dense_copy_of_a_quantized_out_proj():
    """An adapted ``nn.MultiheadAttention`` whose ``out_proj`` is quantized (CLIP's towers)
    multiplies through the quantized layer: autograd keeps no (d, d) weight copy, and the
    input gradient equals the float reference's."""
    torch.manual_seed(0)
    model = Attn()
    ref = Attn()
    ref.load_state_dict(model.state_dict())
    quantize(model, bits=4, group_size=16, targets=("attn.out_proj",))
    with torch.no_grad():
        ref.attn.out_proj.weight.copy_(model.attn.out_proj.weight)
    cfg = make_config("qlora", r=4, alpha=8.0, targets=("attn",), slices=("q", "v", "o"))
    for m in (model, ref):
        inject(m, cfg)
    perturb(model)
    ref.load_state_dict(model.state_dict(), strict=False)
    shapes = []

    def pack(t):
        shapes.append(tuple(t.shape))
        return t

    x = torch.randn(2, 3, D_IN, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = model(x)
    y.sum().backward()
    assert (D_IN, D_IN) not in shapes
    shapes.clear()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y_ref = ref(x_ref)
    y_ref.sum().backward()
    assert (D_IN, D_IN) in shapes  # the float layer's weight: the hook sees one when kept
    torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(x.grad, x_ref.grad)
