"""SLTrain: ``dW = s B A + S`` recomputed by hand, its fixed saved support, its memory.

``python tests/core/test_sltrain.py`` prints the memory / time table of the README
(SLTrain against LoRA at equal trainable count on one ViT-B-sized layer).
"""

import time

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from lorakit.core import inject, load_adapter, make_config, methods, save_adapter
from lorakit.core.contract import perturb
from lorakit.core.zoo import build


def test_sltrain_weight_after_steps_is_w0_plus_sba_plus_s_on_its_support(adamw_steps):
    torch.manual_seed(0)
    lin = nn.Linear(12, 8)
    w0, b0 = lin.weight.detach().clone(), lin.bias.detach().clone()
    model = nn.Sequential(lin)
    r, alpha, density = 2, 4.0, 0.25
    inject(model, make_config("sltrain", r=r, alpha=alpha, density=density, targets=("0",)))
    m = methods(model)[0]
    support0 = m.support.clone()
    x = torch.randn(16, 12)
    adamw_steps(model, x)
    assert torch.equal(m.support, support0)  # the support never moves
    values = m.values.detach()
    assert values.numel() == int(density * 8 * 12) == support0.numel()
    assert (values.abs() > 1e-4).all()  # every sparse entry trained
    sparse = torch.zeros(8, 12)
    for k, flat in enumerate(support0.tolist()):
        sparse[flat // 12, flat % 12] = values[k]
    assert (sparse != 0).sum() == values.numel()
    w = w0 + (alpha / r) * m.B.detach() @ m.A.detach() + sparse
    torch.testing.assert_close(model(x), x @ w.T + b0, atol=1e-5, rtol=1e-5)


def test_support_is_distinct_sorted_seeded_and_per_slot():
    def supports(seed):
        model, _, targets, slices = build("linear")
        inject(model, make_config("sltrain", density=0.05, seed=seed, targets=targets))
        return [m.support for m in methods(model)]

    a, b, c = supports(0), supports(0), supports(1)
    for s in a:
        assert s.dtype == torch.int32
        assert torch.equal(s, s.unique())  # distinct and sorted
        assert int(s.min()) >= 0 and int(s.max()) < 32 * 64
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))  # same seed, same draw
    assert not any(torch.equal(x, y) for x, y in zip(a, c, strict=True))  # another seed
    assert not torch.equal(a[0][:40], a[1][:40])  # fc1 and fc2 draw their own


def test_support_is_saved_and_loaded_not_redrawn(tmp_path):
    model, x, targets, _ = build("linear")
    inject(model, make_config("sltrain", density=0.05, targets=targets))
    perturb(model)
    m = methods(model)[0]
    moved = (m.support.long() + 1) % (m.d_out * m.d_in)  # a support no seed would draw
    m.support = moved.sort().values.to(torch.int32)
    save_adapter(model, tmp_path)
    stored = load_file(str(tmp_path / "adapter.safetensors"))
    key = next(k for k in stored if k.endswith("support"))
    assert stored[key].dtype == torch.int32  # compact: 4 bytes an entry
    fresh, _, _, _ = build("linear")
    load_adapter(fresh, tmp_path)
    assert torch.equal(methods(fresh)[0].support, m.support)
    assert torch.equal(fresh(x), model(x))


@pytest.mark.parametrize("zoo", ["linear", "conv2d"])
def test_recomputed_sparse_path_gives_autograds_gradients(zoo):
    grads = []
    for recompute in (True, False):
        model, x, targets, _ = build(zoo)
        inject(model, make_config("sltrain", density=0.1, recompute=recompute, targets=targets))
        perturb(model)
        xin = x.clone().requires_grad_()
        model(xin).pow(2).mean().backward()
        grads.append([xin.grad] + [p.grad for m in methods(model) for p in m.parameters()])
    for g_re, g_ref in zip(*grads, strict=True):
        torch.testing.assert_close(g_re, g_ref, atol=1e-5, rtol=1e-4)


# ------------------------------------------------------------------------- memory


def saved_bytes(model: nn.Module, x: torch.Tensor) -> int:
    """Bytes autograd keeps from forward to backward, beyond the parameters, buffers and
    the input (which exist anyway): each storage counted once. The input needs a gradient,
    as inside a network whose earlier layers train."""
    x = x.detach().requires_grad_()
    known = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers(), x]}
    seen: dict[int, int] = {}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in known:
            seen[ptr] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model(x).pow(2).mean()
    loss.backward()
    return sum(seen.values())


def equal_count_pair(d: int, lora_r: int, sl_r: int):
    """LoRA rank ``lora_r`` and SLTrain rank ``sl_r`` with the density that fills the gap."""
    density = (lora_r - sl_r) * 2 * d / (d * d)
    return make_config("lora", r=lora_r, targets=("0",)), density


def layer_with(method: str, d: int, **hyper) -> nn.Module:
    """One d x d Linear with the adapter; ``method="full"``: the Linear itself trains."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(d, d))
    if method != "full":
        inject(model, make_config(method, targets=("0",), **hyper))
    return model


def test_sltrain_keeps_no_dense_s_for_backward_at_loras_trainable_count():
    d, tokens = 64, 32
    _, density = equal_count_pair(d, 4, 2)
    lora = layer_with("lora", d, r=4)
    sl = layer_with("sltrain", d, r=2, density=density)
    dense = layer_with("sltrain", d, r=2, density=density, recompute=False)
    count = [sum(p.numel() for p in m.parameters() if p.requires_grad) for m in (lora, sl)]
    assert count[0] == count[1]
    x = torch.randn(tokens, d)
    b_lora, b_sl, b_dense = (saved_bytes(m, x) for m in (lora, sl, dense))
    assert b_sl <= b_lora  # the sparse part keeps nothing new (x is the base layer's)
    assert b_dense - b_sl >= d * d * 4  # without recompute autograd keeps the dense S


def memory_table(d: int = 768, tokens: int = 8 * 197, lora_r: int = 8, sl_r: int = 4):
    """Rows for the README: one d x d Linear, AdamW state included, the fastest of 6 steps
    on one CPU thread."""
    _, density = equal_count_pair(d, lora_r, sl_r)
    x = torch.randn(tokens, d)
    rows = []
    cases = [
        ("lora", {"r": lora_r}),
        ("sltrain", {"r": sl_r, "density": density}),
        ("sltrain (recompute=False)", {"r": sl_r, "density": density, "recompute": False}),
        ("tlora", {}),
        ("full fine-tuning", {}),
    ]
    for label, hyper in cases:
        model = layer_with(label.split()[0], d, **hyper)
        params = [p for p in model.parameters() if p.requires_grad]
        n = sum(p.numel() for p in params)
        bufs = sum(b.numel() * b.element_size() for b in model.buffers())
        state = 4 * n * 4  # value, grad, AdamW m and v in float32
        act = saved_bytes(model, x)
        opt = torch.optim.AdamW(params, lr=1e-3)
        times = []
        for _ in range(6):  # the fastest step: the CPU is shared
            t0 = time.perf_counter()
            opt.zero_grad()
            model(x).pow(2).mean().backward()
            opt.step()
            times.append(time.perf_counter() - t0)
        ms = min(times) * 1e3
        rows.append((label, n, state + bufs, act, ms))
    return rows


if __name__ == "__main__":
    torch.set_num_threads(1)
    print(
        "| adapter | trainable | params+grads+AdamW+buffers (KiB) | saved for backward (KiB) "
        "| ms/step |"
    )
    for label, n, state, act, ms in memory_table():
        print(f"| {label} | {n} | {state / 1024:.0f} | {act / 1024:.0f} | {ms:.1f} |")
