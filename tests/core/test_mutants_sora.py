"""SoRA (``core/methods/sora.py``) pinned where mutation testing (``bash .ci/mutate
core/methods/sora.py``) found it untested: the threshold's ramp ``xi_t = xi min(1, (t+1) /
xi_ramp)``, the fallback ``prox_lr``, the gate in the forward pass, the end of training and the
config limits. Expected values are computed by hand from the formula in the module docstring."""

import pytest
import torch

from lorakit.core import make_config, protocol


def test_threshold_ramps_linearly_over_xi_ramp_steps_then_stays(one_layer):
    model, m, _, _ = one_layer("sora", r=3, xi=2.0, xi_ramp=4)
    opt = torch.optim.SGD([m.g], lr=0.05)
    with torch.no_grad():
        m.g.copy_(torch.tensor([1.0, -1.0, 0.3]))
    expected, g = [], torch.tensor([1.0, -1.0, 0.3])
    for t in range(6):
        thr = 0.05 * 2.0 * min(1.0, (t + 1) / 4)  # 0.025, 0.05, 0.075, 0.1, 0.1, 0.1
        g = torch.sign(g) * (g.abs() - thr).clamp_min(0)
        expected.append(g.clone())
    for t in range(6):
        protocol.after_step(model, opt)
        torch.testing.assert_close(m.g.detach(), expected[t])
        assert int(m.steps) == t + 1
    # the third gate: 0.3 - 0.025 - 0.05 - 0.075 - 0.1 = 0.05 after four steps, 0 after five
    assert float(expected[3][2]) == pytest.approx(0.05) and expected[4][2] == 0
    assert m.active_rank() == 2


def test_without_an_optimizer_the_threshold_uses_prox_lr(one_layer):
    model, m, _, _ = one_layer("sora", r=3, xi=1.0, xi_ramp=2, prox_lr=0.2)
    assert m.threshold() == pytest.approx(0.2 * 1.0 * 0.5)  # t = 0: (0 + 1) / 2
    protocol.after_step(model)
    torch.testing.assert_close(m.g.detach(), torch.full((3,), 0.9))
    assert m.threshold() == pytest.approx(0.2)  # t = 1: min(1, 2 / 2)


def test_the_gate_scales_each_rank_of_the_update(one_layer):
    """``delta(x) = s B diag(g) A x`` with s = alpha / r."""
    model, m, w, b = one_layer("sora", r=3, alpha=6.0)
    with torch.no_grad():
        m.B.copy_(torch.randn(5, 3))
        m.g.copy_(torch.tensor([2.0, 0.0, -0.5]))
    x = torch.randn(4, 6)
    want = (m.B * m.g) @ m.A * (6.0 / 3)
    torch.testing.assert_close(m.delta_weight(), want)
    torch.testing.assert_close(model(x), x @ (w + want).T + b)


def test_after_finish_the_gate_no_longer_moves_and_the_update_is_kept(one_layer):
    model, m, _, _ = one_layer("sora", r=3, xi=1.0, xi_ramp=1)
    with torch.no_grad():
        m.B.copy_(torch.randn(5, 3))
        m.g.copy_(torch.tensor([0.5, 0.0, -2.0]))
    want = (m.B[:, [0, 2]] * torch.tensor([0.5, -2.0])) @ m.A[[0, 2]] * m.s
    opt = torch.optim.SGD([m.g], lr=0.1)
    protocol.finish(model, opt)
    assert m.r == 2 and m.active_rank() == 2 and bool(m.finished)
    torch.testing.assert_close(m.delta_weight(), want)
    steps = int(m.steps)
    protocol.after_step(model, opt)
    assert torch.equal(m.g, torch.ones(2)) and int(m.steps) == steps


def test_every_rank_pruned_leaves_an_exact_zero_update(one_layer):
    model, m, _, _ = one_layer("sora", r=3)
    with torch.no_grad():
        m.B.copy_(torch.randn(5, 3))
        m.g.zero_()
    protocol.finish(model)
    x = torch.randn(2, 6)
    assert m.r == 0
    assert torch.equal(m.delta(x), torch.zeros(2, 5))


@pytest.mark.parametrize(
    "bad", [{"xi": -0.1}, {"xi_ramp": 0}, {"prox_lr": -1e-3}]
)
def test_config_limits_are_refused(bad):
    with pytest.raises(ValueError, match="sora: xi and prox_lr must be >= 0"):
        make_config("sora", r=2, **bad)


def test_config_boundaries_are_accepted():
    cfg = make_config("sora", r=2, xi=0.0, xi_ramp=1, prox_lr=0.0)
    assert (cfg.xi, cfg.xi_ramp, cfg.prox_lr) == (0.0, 1, 0.0)
