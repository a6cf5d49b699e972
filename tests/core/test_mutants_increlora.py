"""IncreLoRA (``core/methods/increlora.py``) pinned where mutation testing (``bash .ci/mutate
core/methods/increlora.py``) found it untested: the growth schedule (``warmup``,
``interval``), ``per_step`` against the remaining budget, the per-layer rank cap, the guards
of the importance score and the config limits. Expected ranks are worked out by hand."""

import pytest
import torch
from torch import nn

from lorakit.core import inject, make_config, methods, protocol


def _model(targets=("0",), d=(12, 16), **kw):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(d[0], d[1]), nn.Tanh(), nn.Linear(d[1], 6))
    cfg = dict(r=1, alpha=1.0, budget_r=4, warmup=2, interval=3, per_step=1, targets=targets)
    inject(model, make_config("increlora", **{**cfg, **kw}))
    return model, methods(model)


def test_growth_happens_at_warmup_then_every_interval_until_the_budget():
    """t counts finished steps: grow when t >= warmup and (t - warmup) % interval == 0, so at
    t = 2, 5, 8 (then the budget 4 x 1 slot is used up)."""
    model, (m,) = _model()
    got = []
    for _ in range(12):
        protocol.after_step(model)
        got.append(m.r)
    assert got == [1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 4, 4]
    assert int(m.steps) == 12


def test_per_step_is_cut_to_the_remaining_budget_most_important_first():
    model, ms = _model(targets=("0", "2"), budget_r=2, warmup=1, interval=1, per_step=2)
    for m, score in zip(ms, (0.1, 0.3), strict=True):
        m.score.fill_(score)
    protocol.after_step(model)  # room 2, per_step 2: both grow
    assert [m.r for m in ms] == [2, 2]
    protocol.after_step(model)  # room 0: nothing
    assert [m.r for m in ms] == [2, 2]
    model, ms = _model(targets=("0", "2"), budget_r=3, warmup=1, interval=1, per_step=2)
    for m, score in zip(ms, (0.1, 0.3), strict=True):
        m.score.fill_(score)
    protocol.after_step(model)  # room 4: both
    protocol.after_step(model)  # room 2: both
    assert [m.r for m in ms] == [3, 3]
    model2, ms2 = _model(targets=("0", "2"), budget_r=2, warmup=1, interval=1, per_step=1)
    ms2[0].score.fill_(0.9)
    ms2[1].score.fill_(0.2)
    protocol.after_step(model2)  # room 2, per_step 1: only the most important
    assert [m.r for m in ms2] == [2, 1]


def test_a_slot_at_full_rank_stops_growing_and_leaves_the_room_to_others():
    """Layer 0 maps 2 -> 16, so its rank is capped at 2; the budget left goes elsewhere."""
    model, ms = _model(targets=("0", "2"), d=(2, 16), budget_r=3, warmup=0, interval=1)
    ms[0].score.fill_(1.0)
    ms[1].score.fill_(0.5)
    ranks = []
    for _ in range(4):
        protocol.after_step(model)
        ranks.append([m.r for m in ms])
    # t=1: slot 0 -> 2 (its cap); t=2..: slot 1 grows until the budget 6 is used
    assert ranks == [[2, 1], [2, 2], [2, 3], [2, 4]]
    protocol.after_step(model)
    assert [m.r for m in ms] == [2, 4]


def test_a_non_finite_gradient_leaves_the_score_unchanged():
    model, (m,) = _model()
    m.score.fill_(0.25)
    m.A.grad = torch.full_like(m.A, float("inf"))
    m.B.grad = torch.ones_like(m.B)
    with torch.no_grad():
        m.B.fill_(1.0)
    protocol.before_step(model)
    assert float(m.score) == 0.25
    m.A.grad = None  # only B's gradient: the mean is over B alone
    protocol.before_step(model)
    beta = 0.85
    assert float(m.score) == pytest.approx(beta * 0.25 + (1 - beta) * 1.0)


@pytest.mark.parametrize(
    "bad, match",
    [({"budget_r": 1, "r": 2}, "budget_r"), ({"interval": 0}, "interval"),
     ({"warmup": -1}, "warmup"), ({"per_step": 0}, "per_step"), ({"beta": 1.0}, "beta"),
     ({"beta": -0.1}, "beta")],
)
def test_config_limits_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        make_config("increlora", **bad)


def test_config_boundaries_are_accepted():
    cfg = make_config("increlora", r=2, budget_r=2, interval=1, warmup=0, per_step=1, beta=0.0)
    assert (cfg.budget_r, cfg.interval, cfg.warmup, cfg.per_step, cfg.beta) == (2, 1, 0, 1, 0.0)


def test_defaults_are_the_documented_ones():
    cfg = make_config("increlora")
    got = (cfg.r, cfg.alpha, cfg.budget_r, cfg.interval, cfg.warmup, cfg.per_step, cfg.beta)
    assert got == (2, 2.0, 8, 20, 20, 2, 0.85)  # the module docstring's defaults


def test_before_step_without_gradients_keeps_the_score():
    """The first ``before_step`` may come before any backward (or a layer gets none)."""
    model, (m,) = _model()
    m.score.fill_(0.5)
    protocol.before_step(model)
    assert float(m.score) == 0.5


def test_a_wide_layer_at_full_rank_does_not_grow():
    """The cap compares rank values: 300 == min(300, 300) stops growth (ranks above 256 are
    distinct int objects in CPython, so an identity test would not)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(300, 300))
    inject(model, make_config("increlora", r=300, budget_r=301, warmup=0, interval=1,
                              targets=("0",)))
    (m,) = methods(model)
    protocol.after_step(model)
    assert m.r == 300
