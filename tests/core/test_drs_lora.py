"""DRS-LoRA: the update recomputed by hand, its proximal step, ranks that follow the
relevance score, and the end of a task (merge into the base, restart)."""

import torch
from torch import nn

from lorakit.core import inject, make_config, methods, protocol


class TwoBranches(nn.Module):
    """``a(x) + 0 * b(x)``: branch ``b`` is irrelevant to any loss on the output."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(8, 6), nn.Linear(8, 6)

    def forward(self, x):
        return self.a(x) + 0.0 * self.b(x)


def _train(model, x, y, steps, lr):
    opt = torch.optim.AdamW(protocol.param_groups(model, lr, 0.0))
    for _ in range(steps):
        opt.zero_grad()
        (model(x) - y).pow(2).mean().backward()
        opt.step()
        protocol.after_step(model, opt)
    return opt


def test_update_is_s_b_diag_w_a_and_w_takes_the_proximal_step():
    torch.manual_seed(0)
    lin = nn.Linear(12, 8)
    w0, b0 = lin.weight.detach().clone(), lin.bias.detach().clone()
    model = nn.Sequential(lin)
    cfg = make_config("drs_lora", r=3, alpha=6.0, sparsity=2.0, sparsity_ramp=4,
                      w_init=0.02, targets=("0",))  # fmt: skip
    inject(model, cfg)
    m = methods(model)[0]
    x, y = torch.randn(16, 12), torch.randn(16, 8)
    lr = 0.01
    opt = torch.optim.AdamW(protocol.param_groups(model, lr, 0.0))
    zeroed = False
    for t in range(6):
        opt.zero_grad()
        (model(x) - y).pow(2).mean().backward()
        opt.step()
        before = m.w.detach().clone()
        protocol.after_step(model, opt)
        thr = lr * 2.0 * min(1.0, (t + 1) / 4)
        want = torch.sign(before) * (before.abs() - thr).clamp_min(0)
        torch.testing.assert_close(m.w.detach(), want, atol=0, rtol=0)
        zeroed |= bool((m.w == 0).any())
    assert zeroed  # the step reached exactly 0 somewhere
    w = w0 + (6.0 / 3) * m.B.detach() @ torch.diag(m.w.detach()) @ m.A.detach()
    torch.testing.assert_close(model(x), x @ w.T + b0, atol=1e-5, rtol=1e-5)


def test_ranks_follow_the_relevance_score():
    torch.manual_seed(0)
    model = TwoBranches()
    cfg = make_config("drs_lora", r=4, sparsity=0.5, sparsity_ramp=1, w_init=0.05,
                      targets=("a", "b"))  # fmt: skip
    inject(model, cfg)
    x = torch.randn(64, 8)
    y = x @ torch.randn(8, 6)
    _train(model, x, y, steps=30, lr=0.01)
    ma, mb = methods(model)
    for m in (ma, mb):
        assert m.active_rank() == int((m.relevance() > 0).sum())
    assert mb.active_rank() == 0  # no gradient reaches b: every rank shrinks to exactly 0
    assert ma.active_rank() > 0 and float(ma.relevance().max()) > 0.05  # a's ranks grew


def test_end_task_merges_into_the_base_and_restarts():
    torch.manual_seed(0)
    model = TwoBranches()
    inject(model, make_config("drs_lora", r=4, sparsity=0.5, sparsity_ramp=1, w_init=0.05,
                              targets=("a", "b")))  # fmt: skip
    x = torch.randn(64, 8)
    opt = _train(model, x, x @ torch.randn(8, 6), steps=30, lr=0.01)
    ma, mb = methods(model)
    ranks = [ma.active_rank(), mb.active_rank()]
    w_a = model.a.base.weight.detach().clone()
    before = model(x).detach()
    protocol.end_task(model, opt)
    torch.testing.assert_close(model(x), before, atol=1e-5, rtol=1e-5)  # same function
    assert not torch.equal(model.a.base.weight, w_a)  # the update is now in W
    assert [int(ma.closed_rank), int(mb.closed_rank)] == ranks
    for m in (ma, mb):
        assert float(m.B.detach().abs().sum()) == 0.0 and torch.equal(m.w, torch.full((4,), 0.05))
        assert int(m.steps) == 0 and m.active_rank() == 4  # a fresh task adapter
