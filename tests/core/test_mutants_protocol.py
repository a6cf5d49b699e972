"""``core/protocol.py`` pinned where mutation testing (``bash .ci/mutate core/protocol.py``)
found it untested. Every expected value is worked out by hand from the inputs (thresholds from
the SoRA formula ``g <- sign(g) max(|g| - lr xi, 0)``, group options from the config)."""

import pytest
import torch
from torch import nn

from lorakit.core import inject, make_config, methods, protocol


def _mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 4))


def _sora(targets=("0",), r=2):
    model = _mlp()
    inject(model, make_config("sora", r=r, xi=1.0, xi_ramp=1, targets=targets))
    return model


def test_before_step_pins_the_lr_for_one_after_step_then_the_current_lr_is_read():
    """A scheduler step between ``before_step`` and ``after_step`` must not change the
    threshold of that step; the next ``after_step`` (no ``before_step``) reads the new lr."""
    model = _sora()
    opt = torch.optim.SGD(protocol.param_groups(model, 0.1), lr=0.1)
    g = methods(model)[0].g
    with torch.no_grad():
        g.copy_(torch.tensor([0.5, -0.5]))
    protocol.before_step(model, opt)
    for group in opt.param_groups:
        group["lr"] = 0.02
    protocol.after_step(model, opt)  # pinned: 0.1 * xi(=1)
    torch.testing.assert_close(g.detach(), torch.tensor([0.4, -0.4]))
    protocol.after_step(model, opt)  # not pinned any more: 0.02
    torch.testing.assert_close(g.detach(), torch.tensor([0.38, -0.38]))
    protocol.before_step(model, opt)  # pins 0.02 again: one step at 0.02, then 0.3
    for group in opt.param_groups:
        group["lr"] = 0.3
    protocol.after_step(model, opt)
    torch.testing.assert_close(g.detach(), torch.tensor([0.36, -0.36]))
    protocol.after_step(model, opt)
    torch.testing.assert_close(g.detach(), torch.tensor([0.06, -0.06]))


def test_every_method_gets_its_own_groups_lr():
    model = _sora(targets=("0", "2"))
    first, second = methods(model)
    opt = torch.optim.SGD([{"params": [first.g], "lr": 0.1}, {"params": [second.g], "lr": 0.3}])
    with torch.no_grad():
        first.g.fill_(1.0)
        second.g.fill_(1.0)
    protocol.after_step(model, opt)
    torch.testing.assert_close(first.g.detach(), torch.full((2,), 0.9))
    torch.testing.assert_close(second.g.detach(), torch.full((2,), 0.7))


def test_regroup_scales_lr_and_initial_lr_and_keeps_the_origin_of_each_group():
    model = _mlp()
    inject(model, make_config("s2_lora", r=2, lam_lr_scale=4.0, targets=("0", "2")))
    m0, m2 = methods(model)
    lams = [m0.lam, m2.lam]
    shared = [p for p in model.parameters() if p.requires_grad and all(p is not q for q in lams)]
    head = nn.Parameter(torch.zeros(3))
    groups = [
        {"params": [head], "lr": 0.5, "weight_decay": 0.2, "momentum": 0.9},
        {"params": [*shared, *lams], "lr": 0.1, "initial_lr": 0.05, "weight_decay": 0.01},
    ]
    out, origin = protocol.regroup(groups, model)
    assert origin == [0, 1, 1]
    assert out[0] == {"params": [head], "lr": 0.5, "weight_decay": 0.2, "momentum": 0.9}
    assert [id(p) for p in out[1]["params"]] == [id(p) for p in shared]
    assert (out[1]["lr"], out[1]["initial_lr"], out[1]["weight_decay"]) == (0.1, 0.05, 0.01)
    assert [id(p) for p in out[2]["params"]] == [id(p) for p in lams]
    assert out[2]["lr"] == pytest.approx(0.4) and out[2]["initial_lr"] == pytest.approx(0.2)
    assert out[2]["weight_decay"] == 0.0


def test_param_groups_default_to_trainable_tensors_and_take_extra_ones():
    model = _sora(targets=("0", "2"))
    trainable = [p for p in model.parameters() if p.requires_grad]
    groups = protocol.param_groups(model, 0.1, weight_decay=0.3)
    got = [p for g in groups for p in g["params"]]
    assert sorted(map(id, got)) == sorted(map(id, trainable))
    assert not any(p is model[0].weight for p in got)  # frozen base weight left out
    head = nn.Parameter(torch.zeros(2))
    groups = protocol.param_groups(model, 0.1, weight_decay=0.3, params=[head, methods(model)[0].g])
    assert [(len(g["params"]), g["weight_decay"]) for g in groups] == [(1, 0.3), (1, 0.0)]
    assert groups[0]["params"][0] is head


def test_ranks_and_rank_changing():
    model = _sora(targets=("0", "2"), r=3)
    with torch.no_grad():
        methods(model)[1].g[0] = 0.0
    assert protocol.ranks(model) == {"0": 3, "2": 2}
    assert protocol.rank_changing(model)
    plain = _mlp()
    inject(plain, make_config("lora", r=2, targets=("0",)))
    assert not protocol.rank_changing(plain) and protocol.ranks(plain) == {}


def test_after_step_and_finish_return_the_resizes_they_applied():
    model = _sora(targets=("0", "2"), r=3)
    opt = torch.optim.Adam(protocol.param_groups(model, 0.0), lr=0.0)
    assert protocol.after_step(model, opt) == []
    with torch.no_grad():
        methods(model)[0].g[1] = 0.0
    changes = protocol.finish(model, opt)
    # each finished slot resizes A (rows), B (columns) and g
    assert len(changes) == 6
    assert {tuple(c.param.shape) for c in changes[:3]} == {(2, 6), (5, 2), (2,)}


def test_method_optimizer_none_one_or_a_clear_error():
    plain = _mlp()
    inject(plain, make_config("lora", r=2, targets=("0",)))
    assert protocol.method_optimizer(plain, 0.1) is None
    alt = _mlp()
    inject(alt, make_config("altlora", r=2, targets=("0",)))
    opt = protocol.method_optimizer(alt, 0.1)
    assert isinstance(opt, torch.optim.Optimizer)
    head = nn.Parameter(torch.zeros(3))
    opt = protocol.method_optimizer(alt, 0.1, params=[*methods(alt)[0].parameters(), head])
    assert any(p is head for g in opt.param_groups for p in g["params"])
    mixed = _mlp()
    inject(mixed, make_config("altlora", r=2, targets=("0",)))
    inject(mixed, make_config("allora", r=2, targets=("2",)), name="second")
    with pytest.raises(ValueError, match="mixes methods"):
        protocol.method_optimizer(mixed, 0.1)


def _largo():
    model = _mlp()
    inject(model, make_config("largo", r=2, targets=("0",)))
    return model


def test_state_dict_is_a_copy_of_the_persistent_buffers_only():
    model = _largo()
    state = protocol.state_dict(model)
    assert {k.rsplit(".", 1)[-1] for k in state} == {
        "B0", "A0", "gamma", "adam_m", "adam_v", "adam_t"}  # not g_acc / n_active
    m = methods(model)[0]
    key = next(k for k in state if k.endswith(".gamma"))
    before = float(m.gamma)
    state[key] += 1.0
    assert float(m.gamma) == before  # the returned state does not alias the buffers


def test_load_state_dict_casts_copies_and_names_the_misfit():
    model, m = _largo(), None
    m = methods(model)[0]
    state = {k: v + 0.5 for k, v in protocol.state_dict(model).items()}
    key = next(k for k in state if k.endswith(".gamma"))
    protocol.load_state_dict(model, state)
    assert float(m.gamma) == float(state[key])
    state[key] += 1.0
    assert float(m.gamma) == float(state[key]) - 1.0  # a copy, not the input tensor
    protocol.load_state_dict(model, {k: v.double() for k, v in state.items()})
    assert m.gamma.dtype == torch.float32 and float(m.gamma) == pytest.approx(float(state[key]))
    with pytest.raises(ValueError, match=r"missing \[\], unexpected \['0.nothing'\]$"):
        protocol.load_state_dict(model, {**state, "0.nothing": torch.zeros(())})
    del state[key]
    with pytest.raises(ValueError, match=rf"missing \['{key}'\], unexpected \[\]$"):
        protocol.load_state_dict(model, state)


def test_prepare_refuses_a_non_finite_loss():
    model = _mlp()
    inject(model, make_config("lora_sb", r=2, targets=("0",)))
    x = torch.randn(4, 6)
    with pytest.raises(ValueError, match="batch 1 is not finite"):
        protocol.prepare(model, [1.0, float("nan")], lambda mod, s: mod(x).sum() * s)
    assert all(p.grad is None for p in model.parameters())


def test_param_groups_default_to_no_weight_decay():
    model = _sora(targets=("0", "2"))
    assert [g["weight_decay"] for g in protocol.param_groups(model, 0.1)] == [0.0, 0.0]


def test_loaded_buffers_are_state_not_part_of_a_graph():
    model = _largo()
    state = {k: v.float().requires_grad_(True) for k, v in protocol.state_dict(model).items()}
    protocol.load_state_dict(model, state)
    assert not any(b.requires_grad for b in methods(model)[0].buffers())


def test_the_misfit_message_names_at_most_five_keys_each_way():
    model = _largo()
    have = sorted(protocol.state_dict(model))  # six buffers of one slot
    assert len(have) == 6
    extra = {f"0.x{i}": torch.zeros(()) for i in range(6)}
    with pytest.raises(ValueError) as err:
        protocol.load_state_dict(model, extra)
    msg = str(err.value)
    assert f"missing {have[:5]}, unexpected {sorted(extra)[:5]}" in msg
    assert have[5] not in msg and "0.x5" not in msg


def test_prepare_averages_the_gradients_over_the_ranks_of_a_distributed_run(second_rank):
    """``_all_reduce_mean`` sums each tensor over the ranks and divides by their number; here
    a stand-in second rank contributes 3.0 to every entry."""
    a, b = torch.tensor([1.0, 5.0]), torch.tensor([[-3.0]])
    protocol._all_reduce_mean([a, b])
    assert torch.equal(a, torch.tensor([2.0, 4.0])) and torch.equal(b, torch.tensor([[0.0]]))


def test_options_other_than_lr_scale_replace_the_groups_value(monkeypatch):
    """Any declared option but ``lr_scale`` is set as is (an ``eps`` here: it must not be
    taken for a scale of the lr)."""
    from lorakit.core.methods.sora import SoRA

    monkeypatch.setattr(SoRA, "param_options", {"g": {"eps": 1e-3, "weight_decay": 0.0}})
    model = _sora()
    groups = protocol.param_groups(model, 0.1, weight_decay=0.2)
    gate = next(g for g in groups if any(p is methods(model)[0].g for p in g["params"]))
    assert (gate["lr"], gate["eps"], gate["weight_decay"]) == (0.1, 1e-3, 0.0)


def test_every_method_is_unpinned_after_its_step():
    """With two slots, both read the new lr at the second ``after_step`` (the unpinning of
    the first must not stop the loop before the second)."""
    model = _sora(targets=("0", "2"))
    opt = torch.optim.SGD(protocol.param_groups(model, 0.1), lr=0.1)
    for m in methods(model):
        with torch.no_grad():
            m.g.fill_(1.0)
    protocol.before_step(model, opt)
    for group in opt.param_groups:
        group["lr"] = 0.02
    protocol.after_step(model, opt)  # pinned 0.1: 0.9
    protocol.after_step(model, opt)  # 0.02: 0.88
    for m in methods(model):
        torch.testing.assert_close(m.g.detach(), torch.full((2,), 0.88))
