"""The in-process cache of thin SVDs: a second run on the same frozen weights decomposes
nothing, a changed weight is decomposed again, hits are copies, and the budget holds."""

import copy

import pytest
import torch
from torch import nn

from lorakit.core import inject, make_config
from lorakit.core import method as core_method


@pytest.fixture
def counted(monkeypatch):
    """A fresh cache, and the number of LAPACK SVDs run since."""
    monkeypatch.setattr(core_method, "SVD_CACHE", core_method.SVDCache(budget_mb=64))
    calls, svd = [0], torch.linalg.svd

    def counting(*args, **kwargs):
        calls[0] += 1
        return svd(*args, **kwargs)

    monkeypatch.setattr(torch.linalg, "svd", counting)
    return calls


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(24, 40), nn.ReLU(), nn.Linear(40, 16))


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_a_second_run_on_the_same_weights_decomposes_nothing(counted):
    base = _model()
    cfg = make_config("comp_lora", r=3, targets=("0", "2"))
    first, second = copy.deepcopy(base), copy.deepcopy(base)
    torch.manual_seed(1)  # the same draw for each run's random parts
    inject(first, cfg)
    assert counted[0] == 2  # one per adapted layer
    torch.manual_seed(1)
    inject(second, cfg)
    assert counted[0] == 2  # both served from the cache
    a, b = _state(first), _state(second)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # one changed entry in layer 2's weight: that layer alone is decomposed again
    changed = copy.deepcopy(base)
    with torch.no_grad():
        changed[2].weight[3, 5] += 1e-3
    torch.manual_seed(1)
    inject(changed, cfg)
    assert counted[0] == 3
    c = _state(changed)
    assert all(torch.equal(a[k], c[k]) for k in a if k.startswith("0."))
    assert any(not torch.equal(a[k], c[k]) for k in a if k.startswith("2.") and "base" not in k)


def test_hits_are_copies_and_equal_the_decomposition(counted):
    w = torch.randn(30, 12)
    u, s, vh = core_method.thin_svd(w)
    u.zero_()  # a caller writing into its factors does not reach the cache
    u2, s2, vh2 = core_method.thin_svd(w)
    assert counted[0] == 1
    assert torch.allclose(u2 * s2 @ vh2, w, atol=1e-5)  # still the SVD of w
    assert torch.equal(s, s2)
    u2.zero_()  # nor does one writing into a hit's factors
    u3, s3, vh3 = core_method.thin_svd(w)
    assert counted[0] == 1 and torch.allclose(u3 * s3 @ vh3, w, atol=1e-5)
    w.requires_grad_(True)  # a graph is never served from the cache
    core_method.thin_svd(w)
    assert counted[0] == 2


def test_a_full_cache_keeps_what_it_has_and_zero_turns_it_off():
    """Runs decompose layers in the same order: with room for two of three weights, the
    first two are kept (evicting the oldest would miss on every layer of the next run)."""
    # room for two entries (u, s, vh of a 10 x 10 float32 weight: 400 + 40 + 400 bytes)
    cache = core_method.SVDCache(budget_mb=2.5 * (10 * 10 * 4 * 2 + 40) / 2**20)
    ws = [torch.randn(10, 10) for _ in range(3)]
    for _ in range(2):
        for w in ws:
            cache.get(w, core_method._thin_svd)
    assert len(cache.entries) == 2 and cache.bytes <= cache.budget
    assert (cache.hits, cache.misses) == (2, 4)  # the second pass: two hits, the third missed
    cache.clear()
    cache.get(ws[2], core_method._thin_svd)
    assert (cache.misses, len(cache.entries)) == (5, 1)
    off = core_method.SVDCache(budget_mb=0)
    off.get(ws[0], core_method._thin_svd)
    off.get(ws[0], core_method._thin_svd)
    assert (off.hits, off.misses, len(off.entries)) == (0, 0, 0)
