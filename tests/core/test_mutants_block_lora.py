"""Block-LoRA (``core/methods/block_lora.py``) pinned where mutation testing (``bash .ci/mutate
core/methods/block_lora.py``) found it untested: the dense form ``s B [A_s ... A_s]`` when a
block's width is odd (a Linear with 3 inputs per block, a 3x3 conv with one channel per block)
and the default ``n_blocks``. References are written in plain torch from the module docstring."""

import torch
import torch.nn.functional as F
from torch import nn

from lorakit.core import inject, make_config, merge, methods
from lorakit.core.contract import perturb


def test_default_is_eight_blocks():
    assert make_config("block_lora").n_blocks == 8
    model = nn.Sequential(nn.Linear(16, 4))
    report = inject(model, make_config("block_lora", r=2, targets=("0",)))
    assert report.trainable == 2 * (4 + 16 // 8)


def test_linear_with_odd_block_width_folds_then_merges_to_repeated_blocks():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(15, 4))  # 5 blocks of 3 inputs
    w0, b0 = model[0].weight.detach().clone(), model[0].bias.detach().clone()
    inject(model, make_config("block_lora", r=2, alpha=4.0, n_blocks=5, targets=("0",)))
    perturb(model)
    m = methods(model)[0]
    a_s, b = m.A_s.detach(), m.B.detach()
    assert a_s.shape == (2, 3)
    x = torch.randn(6, 15)
    folded = x.reshape(6, 5, 3).sum(1)
    with torch.no_grad():
        torch.testing.assert_close(model(x), x @ w0.T + b0 + 2.0 * folded @ a_s.T @ b.T)
        dense = 2.0 * b @ torch.cat([a_s] * 5, 1)
        torch.testing.assert_close(m.delta_weight(), dense)
        merge(model)
        torch.testing.assert_close(model[0].weight, w0 + dense, atol=1e-6, rtol=1e-6)


def test_conv_with_one_channel_per_block_merges_to_repeated_kernels():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(4, 6, 3, padding=1))  # 4 blocks of one 3x3 channel
    w0, b0 = model[0].weight.detach().clone(), model[0].bias.detach().clone()
    inject(model, make_config("block_lora", r=2, alpha=2.0, n_blocks=4, targets=("0",)))
    perturb(model)
    m = methods(model)[0]
    a_s, b = m.A_s.detach(), m.B.detach()
    assert a_s.shape == (2, 9)
    x = torch.randn(2, 4, 5, 5)
    folded = x.sum(1, keepdim=True)  # x_1 + x_2 + x_3 + x_4, one channel each
    z = F.conv2d(folded, a_s.reshape(2, 1, 3, 3), padding=1)
    want = F.conv2d(x, w0, b0, padding=1) + torch.einsum("or,nrhw->nohw", b, z)
    kernel = (b @ a_s).reshape(6, 1, 3, 3).repeat(1, 4, 1, 1)  # the same kernel per channel
    with torch.no_grad():
        torch.testing.assert_close(model(x), want, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(m.delta_weight().reshape(6, 4, 3, 3), kernel)
        merge(model)
        torch.testing.assert_close(model[0].weight, w0 + kernel, atol=1e-6, rtol=1e-6)
