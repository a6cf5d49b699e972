"""FoRA (``core/methods/fora.py``) pinned where mutation testing (``bash .ci/mutate
core/methods/fora.py``) found it untested: token sequences with a class token before the grid
(``prefix_tokens`` default), Conv2d feature maps (N, C, H, W), ``n_bands = 1`` and the
layout error. Expected outputs are built by hand with ``torch.fft`` and the band formula of
the module docstring (radius ``sqrt(f_y^2 + f_x^2) / sqrt(1/2)``, band ``min(floor(rho n),
n - 1)``)."""

import pytest
import torch
from torch import nn

from lorakit.core import inject, make_config, methods


def _bands(h, w, n):
    fy = torch.fft.fftfreq(h)[:, None]
    fx = torch.fft.rfftfreq(w)[None, :]
    rho = (fy**2 + fx**2).sqrt() / 0.5**0.5
    return (rho * n).floor().long().clamp(max=n - 1)


def _filter(z, mask, n):
    """z (N, r, H, W) filtered per channel by mask (r, n) over the radial bands."""
    h, w = z.shape[-2:]
    weights = mask[:, _bands(h, w, n)]
    return torch.fft.irfft2(torch.fft.rfft2(z) * weights, s=(h, w))


def _random(m):
    torch.manual_seed(1)
    with torch.no_grad():
        m.B.copy_(torch.randn_like(m.B))
        m.M.copy_(torch.randn_like(m.M))


def test_a_class_token_before_the_grid_gets_the_plain_lora_path(one_layer):
    model, m, w, b = one_layer("fora", r=2, n_bands=3, grid=(2, 3))
    _random(m)
    x = torch.randn(2, 7, 6)  # 1 + 2 * 3 tokens: the first is not on the grid
    z = x @ m.A.T.detach()
    grid = z[:, 1:].reshape(2, 2, 3, 2).permute(0, 3, 1, 2)
    zf = _filter(grid, m.M.detach(), 3).permute(0, 2, 3, 1).reshape(2, 6, 2)
    zf = torch.cat([torch.zeros(2, 1, 2), zf], 1)
    want = x @ w.T + b + m.s * (z + zf) @ m.B.T.detach()
    torch.testing.assert_close(model(x), want, rtol=1e-5, atol=1e-5)


def test_a_conv_feature_map_is_filtered_on_its_own_grid():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 1)
    w, b = conv.weight.detach()[:, :, 0, 0].clone(), conv.bias.detach().clone()
    model = nn.Sequential(conv)
    inject(model, make_config("fora", r=2, n_bands=2, targets=("0",)))
    m = methods(model)[0]
    _random(m)
    x = torch.randn(2, 3, 4, 5)
    a = m.A.detach().reshape(2, 3)
    z = torch.einsum("rc,nchw->nrhw", a, x)
    y = z + _filter(z, m.M.detach(), 2)
    want = torch.einsum("oc,nchw->nohw", w, x) + b[:, None, None] + m.s * torch.einsum(
        "or,nrhw->nohw", m.B.detach().reshape(4, 2), y)
    torch.testing.assert_close(model(x), want, rtol=1e-5, atol=1e-5)


def test_one_band_is_allowed_and_scales_every_frequency(one_layer):
    model, m, w, b = one_layer("fora", r=2, n_bands=1)
    _random(m)
    x = torch.randn(1, 2, 3, 6)
    z = x @ m.A.T.detach()
    zf = z * m.M.detach()[:, 0]  # one band: every frequency times M[c, 0], i.e. z scaled
    torch.testing.assert_close(model(x), x @ w.T + b + m.s * (z + zf) @ m.B.T.detach(),
                               rtol=1e-5, atol=1e-5)


def test_tokens_without_a_grid_name_their_shape():
    model = nn.Sequential(nn.Linear(6, 5))
    inject(model, make_config("fora", r=2, targets=("0",)))
    with pytest.raises(ValueError, match=r"got input with shape \(2, 7, 'C'\)"):
        model(torch.randn(2, 7, 6))
