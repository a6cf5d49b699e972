"""ALLoRA (``core/methods/allora.py``) pinned where mutation testing (``bash .ci/mutate
core/methods/allora.py``) found it untested: a group whose first tensor is not ALLoRA's (a
head before the adapted layer) still steps every ALLoRA tensor after it with its row lrs."""

import torch
from torch import nn

from lorakit.core import inject, make_config, methods, protocol


def test_allora_tensors_after_a_head_in_the_same_group_step_with_row_lrs():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 6), nn.Tanh(), nn.Linear(6, 4))
    inject(model, make_config("allora", r=2, eta=2.0, targets=("2",)))
    model[0].requires_grad_(True)  # a trainable head, first in the parameter list
    m = methods(model)[0]
    with torch.no_grad():
        m.B.normal_()  # B != 0, so A gets a gradient too
    lr = 0.05
    opt = protocol.method_optimizer(model, lr=lr)
    assert len(opt.param_groups) == 1 and opt.param_groups[0]["params"][0] is model[0].weight
    before = {"A": m.A.detach().clone(), "B": m.B.detach().clone()}
    x, y = torch.randn(8, 6), torch.randn(8, 4)
    (model(x) - y).pow(2).mean().backward()
    grads = {"A": m.A.grad.clone(), "B": m.B.grad.clone()}
    opt.step()
    for k, p in (("A", m.A), ("B", m.B)):
        g = grads[k]  # Adam's first step: g / (|g| + eps), bias corrections cancel
        rate = lr / torch.sqrt(before[k].pow(2).sum(1, keepdim=True) + 1 / 2.0**2)
        want = before[k] - rate * g / (g.abs() + 1e-8)
        torch.testing.assert_close(p.detach(), want, atol=1e-6, rtol=1e-5)
