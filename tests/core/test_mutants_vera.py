"""VeRA (``core/methods/vera.py``) pinned where mutation testing (``bash .ci/mutate
core/methods/vera.py``) found it untested: the merged weight ``diag(b) B diag(d) A`` (only the
forward pass was checked) and which layers share the frozen bases (same flat shape and same
kernel)."""

import torch
import torch.nn.functional as F
from torch import nn

from lorakit.core import inject, make_config, merge, methods
from lorakit.core.contract import perturb


def test_merge_adds_diag_b_times_b_times_diag_d_times_a():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(7, 5), nn.Tanh(), nn.Conv2d(2, 3, 3, padding=1))
    w_lin, w_conv = model[0].weight.detach().clone(), model[2].weight.detach().clone()
    inject(model, make_config("vera", r=4, targets=("0", "2")))
    perturb(model)
    lin, conv = methods(model)
    want = []
    for m in (lin, conv):
        d, b = m.d.detach(), m.b.detach()
        assert d.abs().min() > 1e-3 and b.abs().min() > 1e-3
        want.append(torch.diag(b) @ m.bases.B @ torch.diag(d) @ m.bases.A)
    x = torch.randn(3, 7)
    with torch.no_grad():
        torch.testing.assert_close(lin.delta_weight(), want[0])
        torch.testing.assert_close(conv.delta_weight(), want[1])
        # the forward pass of the 3x3 conv is that kernel, laid out (out, in, kh, kw)
        img = torch.randn(1, 2, 4, 4)
        torch.testing.assert_close(conv.delta(img),
                                   F.conv2d(img, want[1].reshape(3, 2, 3, 3), padding=1),
                                   atol=1e-5, rtol=1e-5)  # fmt: skip
        out_lin = model[0](x)
        merge(model)
        torch.testing.assert_close(model[0].weight, w_lin + want[0], atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(model[2].weight, w_conv + want[1].reshape(3, 2, 3, 3),
                                   atol=1e-6, rtol=1e-6)  # fmt: skip
        torch.testing.assert_close(model[0](x), out_lin, atol=1e-5, rtol=1e-5)


class _Mixed(nn.Module):
    """Two 3x3 convs, a 1x1 conv and a Linear whose flat weights are all 4 x 18."""

    def __init__(self):
        super().__init__()
        self.k3 = nn.Conv2d(2, 4, 3)
        self.k3b = nn.Conv2d(2, 4, 3)
        self.k1 = nn.Conv2d(18, 4, 1)
        self.lin = nn.Linear(18, 4)


def test_bases_are_shared_by_flat_shape_and_kernel():
    model = _Mixed()
    inject(model, make_config("vera", r=3, targets=("k3", "k3b", "k1", "lin")))
    k3, k3b, k1, lin = methods(model)
    assert k3.bases is k3b.bases and k1.bases is lin.bases
    assert k3.bases is not k1.bases
