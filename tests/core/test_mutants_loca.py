"""LoCA (``core/methods/loca.py``) pinned where mutation testing (``bash .ci/mutate
core/methods/loca.py``) found it untested: which steps capture the dense weight gradient
(``G_W`` on every ``relocate_every``-th step, and only then), and a relocation step that
captured nothing (a training step run in eval mode) moving nothing instead of failing."""

import torch
from torch import nn

from lorakit.core import inject, make_config, methods, protocol

D_OUT, D_IN = 6, 7


def _model(**hyper):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(D_IN, D_OUT, bias=False))
    cfg = dict(n_coef=10, alpha=0.5, relocate_every=3, relocate_until=100, targets=("0",))
    inject(model, make_config("loca", **{**cfg, **hyper}))
    target = torch.randn(D_OUT, D_IN)
    return model, methods(model)[0], target


def _loss(model, target):
    return 0.5 * (model(torch.eye(D_IN)).T - target).pow(2).sum()  # dL/dW = W - T


def test_the_weight_gradient_is_captured_on_every_relocate_every_th_step_only():
    model, m, target = _model(relocate_every=3)
    opt = torch.optim.Adam([m.coef], lr=0.1)
    model.train()
    captured = []
    for t in range(12):
        opt.zero_grad()
        _loss(model, target).backward()
        if m.grad_w.numel():
            with torch.no_grad():
                torch.testing.assert_close(m.grad_w, model(torch.eye(D_IN)).T - target)
            captured.append(t)
        opt.step()
        protocol.after_step(model, opt)
        assert m.grad_w.numel() == 0  # dropped once used
    assert captured == [2, 5, 8, 11]  # steps 3, 6, 9, 12


def test_a_relocation_step_without_a_captured_gradient_moves_nothing():
    model, m, target = _model(relocate_every=1)
    opt = torch.optim.Adam([m.coef], lr=0.1)
    model.eval()  # trained in eval mode: no hook, so no G_W, on any step
    cells = (m.loc_u.clone(), m.loc_v.clone())
    for _ in range(6):
        opt.zero_grad()
        _loss(model, target).backward()
        opt.step()
        protocol.after_step(model, opt)
    assert m.curvature() is not None and m.curvature() > 0  # a move could have been scored
    assert int(m.steps) == 6
    assert torch.equal(m.loc_u, cells[0]) and torch.equal(m.loc_v, cells[1])
