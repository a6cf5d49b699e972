"""SVFit (``core/methods/svfit.py``) pinned where mutation testing (``bash .ci/mutate
core/methods/svfit.py``) found it untested: ``alpha`` is ignored (no scaling, and the module
reports ``s=1``, the scale it applies), checked against the SVD of ``W0`` by hand."""

import torch


def test_alpha_is_ignored_and_the_reported_scale_is_the_applied_one(one_layer):
    model, m, w0, b0 = one_layer("svfit", r=2, alpha=16.0)
    with torch.no_grad():
        m.delta_s.copy_(torch.tensor([0.5, -0.25]))
    u, s, vh = torch.linalg.svd(w0.double(), full_matrices=False)
    ds = torch.tensor([0.5, -0.25], dtype=torch.float64)
    w = u[:, :2] @ torch.diag(s[:2] + ds) @ vh[:2] + u[:, 2:] @ torch.diag(s[2:]) @ vh[2:]
    x = torch.randn(4, 6)
    with torch.no_grad():
        torch.testing.assert_close(model(x), x @ w.float().T + b0, atol=1e-5, rtol=1e-5)
    assert m.s == 1.0 and m.extra_repr().endswith("r=2, s=1")
