"""GORP (``core/methods/gorp.py``) pinned where mutation testing (``bash .ci/mutate
core/methods/gorp.py``) found it untested: ``memory_report``'s GORP total against the
state sizes counted by hand, and ``end_task`` on a merged model (refused only when it would
merge the adapter a second time)."""

import pytest
import torch

from lorakit.core import inject, make_config, merge, methods, protocol, unmerge
from lorakit.core.methods.gorp import full_weights, memory_report
from lorakit.core.zoo import build


def _gorp(**hyper):
    torch.manual_seed(0)
    model, x, targets, _ = build("linear")  # fc1 (64x32), fc2 (32x64): m = 32, n = 64 each
    inject(model, make_config("gorp", r=2, alpha=4.0, targets=targets, **hyper))
    return model, x


def _steps(model, opt, x, n=3):
    y = torch.tanh(x @ torch.randn(32, 32, generator=torch.Generator().manual_seed(1)))
    for _ in range(n):
        opt.zero_grad()
        (model(x) - y).pow(2).mean().backward()
        opt.step()


def test_memory_report_totals_moments_projection_and_basis():
    model, x = _gorp(r_g=5)
    opt = protocol.method_optimizer(model, lr=1e-2)
    rep = memory_report(opt)
    # per weight: moments 2 r_g n = 640, P: m r_g = 160, Q: empty; Adam: 2 m n = 4096
    assert (rep["moments"], rep["projection"], rep["basis"]) == (1280, 320, 0)
    assert rep["gorp"] == 1600 and rep["adam"] == 8192
    _steps(model, opt, x)
    protocol.end_task(model, opt)
    ks = [opt.state[w]["q"].shape[1] for _, w in full_weights(model)]
    assert all(k > 0 for k in ks)
    rep = memory_report(opt)
    r = [min(5, 32 - k) for k in ks]  # P avoids Q: at most m - k columns
    want = sum(2 * ri * 64 + 32 * ri + 32 * k for ri, k in zip(r, ks, strict=True))
    assert rep["basis"] == 32 * sum(ks) and rep["gorp"] == want


def test_end_task_refuses_a_merged_model_only_when_it_would_merge_again():
    model, x = _gorp(r_g=4)
    opt = protocol.method_optimizer(model, lr=1e-2)
    _steps(model, opt, x)
    merge(model)
    with pytest.raises(ValueError, match="unmerge the model first"):
        protocol.end_task(model, opt)
    unmerge(model)
    protocol.end_task(model, opt)  # unmerged: merges the adapter into W and resets it
    assert all(not m.B.any() for m in methods(model))

    keep, x = _gorp(r_g=4, merge_lora_per_task=False)
    opt = protocol.method_optimizer(keep, lr=1e-2)
    _steps(keep, opt, x)
    merge(keep)
    out = keep(x).detach()
    protocol.end_task(keep, opt)  # nothing to merge: the merged model is fine
    assert all(opt.state[w]["q"].shape[1] > 0 for _, w in full_weights(keep))
    assert all(m.B.any() for m in methods(keep))
    torch.testing.assert_close(keep(x), out)
