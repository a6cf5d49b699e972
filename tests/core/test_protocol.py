"""The training-protocol interface: LoRA-SB's prepare step, method state for resume."""

import json

import pytest
import torch
from torch import nn

from lorakit.core import inject, load_adapter, make_config, methods, protocol, save_adapter
from lorakit.core.zoo import build


def test_protocol_state_round_trip():
    model, x, targets, _ = build("linear")
    inject(model, make_config("loca", n_coef=8, targets=targets))
    state = protocol.state_dict(model)
    assert {k.rsplit(".", 1)[-1] for k in state} == {"loc_u", "loc_v", "steps", "sec_prev", "sec_valid", "sec_sum"}
    model2, _, _, _ = build("linear")
    inject(model2, make_config("loca", n_coef=8, targets=targets))
    protocol.load_state_dict(model2, state)
    for a, b in zip(methods(model), methods(model2), strict=True):
        assert torch.equal(a.loc_u, b.loc_u) and torch.equal(a.loc_v, b.loc_v)
    with pytest.raises(ValueError, match="does not fit"):
        protocol.load_state_dict(model2, {})


# --- LoRA-SB: the prepare step -----------------------------------------------------------


def _regression():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(32, 48), nn.Tanh(), nn.Linear(48, 16))
    xs = [torch.randn(64, 32) for _ in range(4)]
    teacher = nn.Sequential(nn.Linear(32, 48), nn.Tanh(), nn.Linear(48, 16))
    batches = [(x, teacher(x).detach()) for x in xs]
    return model, batches


def _loss(model, batch):
    x, y = batch
    return (model(x) - y).pow(2).mean()


def _full_gradient(model, batches):
    w = model[0].weight
    w.requires_grad_(True)
    g = sum(torch.autograd.grad(_loss(model, b), w)[0] for b in batches) / len(batches)
    w.requires_grad_(False)
    return g


def _cos(a, b):
    a, b = a.detach(), b.detach()
    return float((a * b).sum() / (a.norm() * b.norm()))


@pytest.mark.parametrize("transform", ["raw", "sign"])
def test_lora_sb_first_update_follows_full_fine_tuning_better_than_random_init(transform):
    model, batches = _regression()
    g_full = _full_gradient(model, batches)
    results = {}
    for init in ("prepared", "random"):
        m_model, _ = _regression()  # the same weights (same seed)
        inject(m_model, make_config("lora_sb", r=4, targets=("0",), grad_transform=transform))
        m = methods(m_model)[0]
        if init == "prepared":
            assert protocol.prepare(m_model, batches, _loss) == 4
            assert all(p.grad is None for p in m_model.parameters())
            init_cos = _cos(m.delta_weight(), -g_full)  # the init is full FT's first update
        before = m.delta_weight().detach().clone()
        opt = torch.optim.SGD([m.R], lr=0.1)
        sum(_loss(m_model, b) for b in batches).backward()
        opt.step()
        results[init] = _cos(m.delta_weight().detach() - before, -g_full)
    assert init_cos > 0.5
    assert results["prepared"] > results["random"] + 0.3, results
    if transform == "raw":  # both equal the best any rank-4 update can do: ||G_4|| / ||G||
        s = torch.linalg.svdvals(g_full)
        best = float(s[:4].norm() / s.norm())
        assert abs(init_cos - best) < 1e-3 and abs(results["prepared"] - best) < 1e-3


def test_lora_sb_without_prepare_starts_at_base_and_prepare_changes_it():
    model, batches = _regression()
    x = batches[0][0]
    base = model(x).detach()
    inject(model, make_config("lora_sb", r=4, targets=("0", "2")))
    assert protocol.needs_prepare(model)
    assert torch.equal(model(x), base)
    model.eval()
    protocol.prepare(model, batches[:2], _loss)
    assert not model.training  # mode restored
    assert (model(x) - base).abs().max() > 1e-4
    assert all(m.probe is None for m in methods(model))


def test_lora_sb_prepare_errors():
    model, batches = _regression()
    inject(model, make_config("lora_sb", r=4, targets=("0", "2")))
    with pytest.raises(ValueError, match="no batches"):
        protocol.prepare(model, [], _loss)
    with pytest.raises(ValueError, match="layer 0 got no gradient"):  # only layer 2 is used
        protocol.prepare(model, batches[:1], lambda mod, b: mod[2](torch.randn(4, 48)).sum())
    with pytest.raises(ValueError, match="does not depend on the adapters"):
        protocol.prepare(model, batches[:1], lambda mod, b: b[1].sum())
    assert all(m.probe is None for m in methods(model))
    assert protocol.prepare(nn.Linear(2, 2), batches, _loss) == 0  # no method needs it


def test_prepared_lora_sb_saves_and_loads_its_frozen_factors(tmp_path):
    model, batches = _regression()
    inject(model, make_config("lora_sb", r=4, targets=("0",)))
    protocol.prepare(model, batches, _loss)
    x = batches[0][0]
    save_adapter(model, tmp_path / "a")
    fresh, _ = _regression()
    load_adapter(fresh, tmp_path / "a")
    assert torch.equal(fresh(x), model(x))
    meta = json.loads((tmp_path / "a" / "adapter_config.json").read_text())
    assert meta["method"] == "lora_sb"
