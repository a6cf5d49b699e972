"""fp16 / bf16 base weights: unmerge restores them bit for bit; merged equals unmerged
within the rounding of one weight update (the tolerance documented in core/api.py)."""

import pytest
import torch
from torch import nn

from lorakit.core import inject, make_config, merge, unmerge
from lorakit.core.contract import perturb
from lorakit.core.zoo import MHABlock

# relative output tolerance: a few units in the last place of the weight dtype
TOL = {torch.bfloat16: 3e-2, torch.float16: 4e-3}


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("method", ["lora", "largo", "comp_lora"])
def test_low_precision_merge_round_trip(dtype, method):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 96), nn.GELU(), nn.Linear(96, 64))
    hyper = {"k": 4} if method == "comp_lora" else {}
    inject(model, make_config(method, r=4, alpha=8.0, targets=("0", "2"), **hyper))
    perturb(model)
    model.to(dtype)  # base weights in low precision; adapter tensors follow
    for m in (model[0], model[2]):
        m.base.to(dtype)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if "base" in n}
    x = torch.randn(8, 64, dtype=dtype)
    with torch.no_grad():
        unmerged = model(x).float()
        merge(model)
        merged = model(x).float()
    scale = unmerged.abs().max()
    assert (merged - unmerged).abs().max() <= TOL[dtype] * scale
    unmerge(model)
    for n, p in model.named_parameters():
        if n in before:
            assert torch.equal(p, before[n]), f"{n} drifted after merge/unmerge"


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_low_precision_attention_slices_round_trip(dtype):
    torch.manual_seed(0)
    model = MHABlock(c=32)
    inject(model, make_config("lora", r=2, targets=("attn",), slices=("q", "k", "v", "o")))
    perturb(model)
    model.to(dtype)
    w_in = model.attn.base.in_proj_weight.detach().clone()
    w_out = model.attn.base.out_proj.weight.detach().clone()
    for _ in range(3):  # repeated merges never accumulate drift
        merge(model)
        unmerge(model)
    assert torch.equal(model.attn.base.in_proj_weight, w_in)
    assert torch.equal(model.attn.base.out_proj.weight, w_out)


def _saved_input_copies(fn, x: torch.Tensor) -> list[torch.dtype]:
    """The dtypes of the distinct tensors that autograd keeps for the backward pass of
    ``fn(x)`` and that hold ``x``'s values (the input or a cast of it; one storage once)."""
    kept, seen = [], set()

    def pack(t):
        if t.numel() == x.numel() and t.data_ptr() not in seen:
            if torch.equal(t.reshape(x.shape), x.to(t.dtype)):
                seen.add(t.data_ptr())
                kept.append(t.dtype)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(x).float().sum().backward()
    return kept


@pytest.mark.parametrize("method", ["lora", "s2_lora"])
def test_autocast_keeps_one_low_precision_copy_of_the_input_for_all_slices(method):
    """Under bf16 autocast, q/k/v adapters on one packed projection share one bf16 cast of
    the input (three copies were kept before: bf16 CLIP attention at 1.13x PEFT's peak),
    and the output equals what each slice's own cast gives."""
    torch.manual_seed(0)
    block = MHABlock(32, 4)
    inject(block, make_config(method, r=4, alpha=8.0, targets=("attn",), slices=("q", "k", "v")))
    perturb(block)
    host = block.attn
    x = torch.randn(2, 5, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        kept = _saved_input_copies(lambda t: host._packed_proj(t), x)
        shared = host._packed_proj(x)
        base = torch.nn.functional.linear(x, host.base.in_proj_weight, host.base.in_proj_bias)
        each = base + torch.cat([host._delta(s, x, base.dtype) for s in ("q", "k", "v")], -1)
    assert kept.count(torch.bfloat16) == 1, kept
    torch.testing.assert_close(shared, each, rtol=0, atol=0)
