"""SLTrain (``core/methods/sltrain.py``) pinned where mutation testing (``bash .ci/mutate
core/methods/sltrain.py``) found it untested: a support of a layer with 2^31 or more entries
is stored as ``int64`` (its flat indices do not fit ``int32``; ``torch.randperm`` is replaced
by a stand-in permutation so that no 2^31-entry tensor is built); the defaults and the
``density`` limits, at least one entry on a tiny layer; and the input's gradient through the
recomputed sparse path when the sparse values are frozen."""

import pytest
import torch

from lorakit.core import make_config
from lorakit.core.methods.sltrain import random_support


def test_flat_indices_past_int32_are_kept_exactly(monkeypatch):
    monkeypatch.setattr(torch, "randperm", lambda n, generator=None: torch.tensor(
        [n - 1, 3, n - 5, 0], dtype=torch.int64))  # the first 3 are kept
    big = 2**31 + 7
    got = random_support(big, 3, seed=0, key="layer")
    assert got.dtype == torch.int64 and got.tolist() == [3, big - 5, big - 1]
    small = 2**31 - 1  # the largest index, 2^31 - 2, still fits int32
    got = random_support(small, 3, seed=0, key="layer")
    assert got.dtype == torch.int32 and got.tolist() == [3, small - 5, small - 1]


def test_defaults_limits_and_at_least_one_entry(one_layer):
    cfg = make_config("sltrain")
    assert (cfg.density, cfg.seed, cfg.recompute) == (0.01, 0, True)
    for bad in (0.0, -0.5, 1.5):
        with pytest.raises(ValueError, match=r"density must be in \(0, 1\]"):
            make_config("sltrain", density=bad)
    full = one_layer("sltrain", r=2, density=1.0).m  # every entry of the 5 x 6 weight
    assert full.support.tolist() == list(range(30))
    tiny = one_layer("sltrain", r=2, density=0.01).m  # floor(0.3) = 0 entries: one kept
    assert tiny.values.numel() == 1 and tiny.extra_repr().endswith(", nnz=1")
    assert one_layer("sltrain", r=2, density=0.1).m.values.numel() == 3  # floor(3.0)


def test_the_input_gets_its_gradient_when_the_sparse_values_are_frozen(one_layer):
    """With ``values`` frozen (and ``x`` requiring grad) the recomputed sparse path still
    passes ``d loss / d x`` on: for ``loss = sum(y)`` it is ``1^T (W0 + s B A + S)``."""
    model, m, w0, _ = one_layer("sltrain", r=2, alpha=4.0, density=0.3)
    with torch.no_grad():
        m.B.normal_()
        m.values.normal_()
    m.values.requires_grad_(False)
    dense = torch.zeros(30)
    dense[m.support.long()] = m.values.detach()
    w = w0 + 2.0 * (m.B @ m.A).detach() + dense.view(5, 6)  # s = alpha / r = 2
    x = torch.randn(4, 6, requires_grad=True)
    model(x).sum().backward()
    torch.testing.assert_close(x.grad, torch.ones(4, 5) @ w, atol=1e-5, rtol=1e-5)
