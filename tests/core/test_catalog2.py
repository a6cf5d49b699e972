"""Catalogue II invariants: SoRA, IncreLoRA, LoRA-Squeeze, DiffoRA, AltLoRA, ALLoRA, LoRA-GGPO."""

import copy
import io
import json

import pytest
import torch
from torch import nn

from lorakit.core import (
    inject,
    list_methods,
    load_adapter,
    make_config,
    methods,
    protocol,
    save_adapter,
)
from lorakit.core.contract import perturb
from lorakit.core.methods.allora import ALLoRAOptimizer, row_lrs
from lorakit.core.methods.lora_squeeze import best_rank_k
from lorakit.core.table import method_rows
from lorakit.core.zoo import build

NEW = ["sora", "increlora", "lora_squeeze", "diffora", "altlora", "allora", "lora_ggpo"]


def _mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(12, 16), nn.Tanh(), nn.Linear(16, 10), nn.Tanh(), nn.Linear(10, 6))


TARGETS = ("0", "2", "4")


def test_registered_listed_and_counted():
    assert set(NEW) <= set(list_methods())
    rows = {row["method"]: row for row in method_rows()}
    for name in NEW:
        assert rows[name]["mergeable"] is True and "per layer" in rows[name]["trainable"]
    model = _mlp()
    report = inject(model, make_config("sora", r=3, targets=TARGETS))
    assert report.trainable == sum(3 * (i + o + 1) for o, i in ((16, 12), (10, 16), (6, 10)))
    model = _mlp()
    report = inject(model, make_config("diffora", r=3, targets=TARGETS))
    assert report.trainable == sum(3 * (i + o) + 1 for o, i in ((16, 12), (10, 16), (6, 10)))


# --- SoRA ----------------------------------------------------------------------------------


def test_sora_proximal_step_and_finish_saves_smaller_lora(tmp_path):
    model, x = _mlp(), torch.randn(5, 12)
    inject(model, make_config("sora", r=4, targets=TARGETS, xi=2.0, xi_ramp=1))
    perturb(model)
    opt = torch.optim.SGD(protocol.param_groups(model, 0.05), lr=0.05)
    gates = {m: m.g.detach().clone() for m in methods(model)}
    protocol.before_step(model, opt)
    protocol.after_step(model, opt)  # no gradient: only the proximal step moves g
    for m, g in gates.items():
        assert torch.allclose(m.g, torch.sign(g) * (g.abs() - 0.05 * 2.0).clamp_min(0))
    first, last = methods(model)[0], methods(model)[-1]
    with torch.no_grad():
        first.g[1:3] = 0.0
        last.g.zero_()
    model.eval()
    before = model(x)
    protocol.finish(model)
    assert protocol.ranks(model) == {"0": 2, "2": 4, "4": 0}
    assert torch.allclose(model(x), before, atol=1e-6)
    assert all(torch.equal(m.g, torch.ones(m.r)) for m in methods(model))
    save_adapter(model, tmp_path)
    meta = json.loads((tmp_path / "adapter_config.json").read_text())
    assert [layer["ranks"] for layer in meta["layers"]] == [{"weight": 2}, {"weight": 4}, {"weight": 0}]
    fresh = _mlp()
    load_adapter(fresh, tmp_path)
    assert protocol.ranks(fresh) == {"0": 2, "2": 4, "4": 0}
    assert torch.equal(fresh(x), model(x))


def test_sora_gate_has_no_weight_decay():
    model = _mlp()
    inject(model, make_config("sora", r=2, targets=TARGETS))
    groups = protocol.param_groups(model, 1e-3, weight_decay=0.1)
    gates = {id(m.g) for m in methods(model)}
    for g in groups:
        ids = {id(p) for p in g["params"]}
        assert ids <= gates and g["weight_decay"] == 0.0 or not ids & gates and g["weight_decay"] == 0.1


def test_sora_threshold_takes_the_gates_own_group_lr():
    """SoRA's proximal step is ``lr_g * xi`` with the lr of the gate's group, not of A's."""
    model = _mlp()
    inject(model, make_config("sora", r=4, xi=0.5, xi_ramp=1, targets=TARGETS))
    ms = methods(model)
    gates = {id(m.g) for m in ms}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in gates]
    opt = torch.optim.SGD([{"params": rest, "lr": 0.01}, {"params": [m.g for m in ms], "lr": 0.2}])
    m = ms[0]
    with torch.no_grad():
        m.g.copy_(torch.tensor([0.05, -0.5, 0.15, 1.0]))
    protocol.after_step(model, opt)  # no optimizer step taken: only the proximal step acts
    # threshold = 0.2 * 0.5 = 0.1 (A's lr would give 0.005)
    torch.testing.assert_close(m.g.detach(), torch.tensor([0.0, -0.4, 0.05, 0.9]))


# --- IncreLoRA -----------------------------------------------------------------------------


def _increlora(**kw):
    model = _mlp()
    cfg = dict(r=1, alpha=1.0, budget_r=2, warmup=1, interval=1, per_step=1, targets=TARGETS)
    inject(model, make_config("increlora", **{**cfg, **kw}))
    return model


def test_increlora_grows_most_important_within_budget_output_unchanged():
    model, x = _increlora(), torch.randn(5, 12)
    perturb(model)
    ms = methods(model)
    for m, score in zip(ms, (0.1, 0.7, 0.3), strict=True):
        m.score.fill_(score)
    model.eval()
    before = model(x)
    protocol.after_step(model)
    assert [m.r for m in ms] == [1, 2, 1]  # the most important slot grew
    assert torch.allclose(model(x), before, atol=1e-6)  # new rank: B column 0
    for _ in range(10):
        protocol.after_step(model)
    assert sum(m.r for m in ms) == 2 * 3  # the budget, never more


def test_resize_keeps_adam_moments_of_kept_ranks_and_other_tensors():
    model, x = _increlora(), torch.randn(5, 12)
    perturb(model)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(2):
        model(x).pow(2).mean().backward()
        opt.step()
        opt.zero_grad()
    m = methods(model)[0]
    other = methods(model)[1]
    kept = {k: v.clone() for k, v in opt.state[m.A].items()}
    untouched = {k: v.clone() for k, v in opt.state[other.B].items()}
    m.grow(2)
    protocol.apply_resizes(model, opt)
    st = opt.state[m.A]
    assert st["exp_avg"].shape == (3, 12)
    assert torch.equal(st["exp_avg"][:1], kept["exp_avg"][:1])
    assert torch.equal(st["exp_avg_sq"][1:], torch.zeros(2, 12))
    assert torch.equal(st["step"], kept["step"])
    assert opt.state[m.B]["exp_avg"].shape == (16, 3)
    assert all(torch.equal(opt.state[other.B][k], v) for k, v in untouched.items())
    model(x).pow(2).mean().backward()  # the optimizer keeps working on the new shapes
    opt.step()


def test_increlora_before_step_measures_smoothed_theta_times_grad():
    """The importance score is measured, not set: after two backward passes the score is
    the beta-smoothed mean |theta * grad| over A and B, computed here by hand."""
    model, x = _mlp(), torch.randn(5, 12)
    beta = 0.6
    inject(model, make_config("increlora", r=2, beta=beta, targets=TARGETS))
    perturb(model)  # B != 0, so A has a gradient too
    ms = methods(model)
    expected = [0.0] * len(ms)
    for _ in range(2):
        model.zero_grad()
        model(x).pow(2).mean().backward()
        for i, m in enumerate(ms):
            sens = torch.cat([(m.A * m.A.grad).abs().flatten(), (m.B * m.B.grad).abs().flatten()])
            expected[i] = beta * expected[i] + (1 - beta) * float(sens.mean())
        protocol.before_step(model)
    got = [float(m.score) for m in ms]
    assert min(expected) > 0
    assert got == pytest.approx(expected, rel=1e-5)


def _train(model, opt, steps, x):
    for _ in range(steps):
        model(x).pow(2).mean().backward()
        protocol.before_step(model, opt)
        opt.step()
        opt.zero_grad()
        protocol.after_step(model, opt)


def test_increlora_resumed_run_continues_exactly():
    """A checkpoint taken after rank changes loads into a fresh model (initial ranks): the
    shapes come back first, then tensors, method state and optimizer state."""
    x = torch.randn(5, 12)
    full = _increlora(budget_r=3, interval=2)
    perturb(full)
    cut = copy.deepcopy(full)
    opt_full = torch.optim.AdamW([p for p in full.parameters() if p.requires_grad], lr=1e-2)
    _train(full, opt_full, 8, x)

    opt = torch.optim.AdamW([p for p in cut.parameters() if p.requires_grad], lr=1e-2)
    _train(cut, opt, 5, x)
    assert protocol.ranks(cut) != {"0": 1, "2": 1, "4": 1}
    buf = io.BytesIO()
    torch.save({"model": cut.state_dict(), "opt": opt.state_dict()}, buf)
    buf.seek(0)
    ckpt = torch.load(buf)
    resumed = _increlora(budget_r=3, interval=2)
    resumed.load_state_dict(ckpt["model"])
    assert protocol.ranks(resumed) == protocol.ranks(cut)
    opt2 = torch.optim.AdamW([p for p in resumed.parameters() if p.requires_grad], lr=1e-2)
    opt2.load_state_dict(ckpt["opt"])
    _train(resumed, opt2, 3, x)
    assert protocol.ranks(resumed) == protocol.ranks(full)
    assert torch.equal(resumed(x), full(x))


# --- LoRA-Squeeze (in-tuning) --------------------------------------------------------------


def test_best_rank_k_equals_truncated_full_svd():
    torch.manual_seed(0)
    b, a = torch.randn(20, 6).double(), torch.randn(6, 15).double()
    b2, a2 = best_rank_k(b, a, 3)
    u, s, vh = torch.linalg.svd(b @ a)
    assert torch.allclose(b2 @ a2, (u[:, :3] * s[:3]) @ vh[:3], atol=1e-9)


def test_squeeze_anneals_ranks_on_schedule():
    model = _mlp()
    inject(model, make_config("lora_squeeze", r=6, alpha=6.0, target_r=2, anneal_steps=4,
                              targets=TARGETS))
    perturb(model)
    seen = []
    for _ in range(6):
        m = methods(model)[0]
        dw = (m.B @ m.A).detach().double()
        protocol.after_step(model)
        seen.append(m.r)
        u, s, vh = torch.linalg.svd(dw)
        k = m.r
        assert torch.allclose((m.B @ m.A).double(), (u[:, :k] * s[:k]) @ vh[:k], atol=1e-5)
    assert seen == [5, 4, 3, 2, 2, 2]
    assert protocol.ranks(model) == {"0": 2, "2": 2, "4": 2}


# --- DiffoRA -------------------------------------------------------------------------------


def test_diffora_keeps_top_modules_and_saves_their_ranks(tmp_path):
    model, x = _mlp(), torch.randn(5, 12)
    inject(model, make_config("diffora", r=3, keep=0.5, search_steps=2, targets=TARGETS))
    perturb(model)
    ms = methods(model)
    with torch.no_grad():
        for m, beta in zip(ms, (0.5, -1.0, 2.0), strict=True):
            m.beta.fill_(beta)
    kept_dw = [m.delta_weight().detach() for m in ms]
    protocol.after_step(model)
    assert all(m.searching for m in ms)  # one step: still searching
    protocol.after_step(model)
    assert protocol.ranks(model) == {"0": 3, "2": 0, "4": 3}  # top ceil(0.5 * 3) = 2 by beta
    assert torch.allclose(ms[0].delta_weight(), kept_dw[0]) and torch.allclose(
        ms[2].delta_weight(), kept_dw[2]
    )
    assert torch.equal(ms[1].delta_weight(), torch.zeros(10, 16))
    model.eval()
    save_adapter(model, tmp_path)
    fresh = _mlp()
    load_adapter(fresh, tmp_path)
    assert protocol.ranks(fresh) == {"0": 3, "2": 0, "4": 3}
    assert torch.equal(fresh(x), model(x))


# --- AltLoRA -------------------------------------------------------------------------------


def test_altlora_fixed_a_is_least_squares_projected_step_on_b():
    """Hand-computed: loss = sum(W * C), so the full gradient is C. With A = [[1,0,0],
    [0,2,0]], s = 1: C A^T (A A^T)^{-1} = [[1,4],[4,10]] diag(1, 1/4) = [[1,1],[4,2.5]]."""
    model = nn.Sequential(nn.Linear(3, 2, bias=False))
    inject(model, make_config("altlora", r=2, alpha=2.0, damping=0.0, targets=("0",)))
    m = methods(model)[0]
    with torch.no_grad():
        m.A.copy_(torch.tensor([[1.0, 0, 0], [0, 2.0, 0]]))
    c = torch.tensor([[1.0, 2, 3], [4, 5, 6]])
    opt = protocol.method_optimizer(model, lr=0.1)
    (model(torch.eye(3)) * c.T).sum().backward()
    a_before = m.A.detach().clone()
    opt.step()
    assert torch.allclose(m.B, -0.1 * torch.tensor([[1.0, 1.0], [4.0, 2.5]]))
    assert torch.equal(m.A, a_before)  # this step moved B only
    # the weight moved by -lr * (C projected on A's row space): the first two columns
    assert torch.allclose(m.delta_weight(), -0.1 * torch.tensor([[1.0, 2, 0], [4, 5, 0]]))
    opt.zero_grad()
    b_before = m.B.detach().clone()
    (model(torch.eye(3)) * c.T).sum().backward()
    opt.step()
    assert torch.equal(m.B, b_before) and not torch.equal(m.A, a_before)  # now A moves


# --- ALLoRA --------------------------------------------------------------------------------


def test_allora_per_row_learning_rates_equal_the_formula():
    model = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))
    inject(model, make_config("allora", r=2, eta=2.0, targets=("0",)))
    model[2].weight.requires_grad_(True)  # a tensor outside the method: plain AdamW
    m = methods(model)[0]
    with torch.no_grad():
        m.B.copy_(torch.randn(5, 2))
    head = model[2].weight
    opt = protocol.method_optimizer(model, lr=0.1, weight_decay=0.0)
    assert isinstance(opt, ALLoRAOptimizer)
    twin = [p.detach().clone().requires_grad_(True) for p in (m.A, m.B, head)]
    ref = torch.optim.AdamW(twin, lr=1.0, weight_decay=0.0)  # lr 1: the Adam direction
    model(torch.randn(4, 6)).pow(2).sum().backward()
    for t, p in zip(twin, (m.A, m.B, head), strict=True):
        t.grad = p.grad.clone()
    before = [p.detach().clone() for p in (m.A, m.B, head)]
    rates = [row_lrs(p, 0.1, 2.0) for p in before[:2]]
    opt.step()
    ref.step()
    for p, b, t, rate in zip((m.A, m.B), before[:2], twin[:2], rates, strict=True):
        direction = b - t.detach()  # AdamW with lr 1 moved by exactly the direction
        assert torch.allclose(p, b - rate[:, None] * direction, atol=1e-6)
    expect = 0.1 / torch.sqrt(before[1].pow(2).sum(1) + 1 / 4.0)
    assert torch.allclose(rates[1], expect)
    assert torch.allclose(head, before[2] - 0.1 * (before[2] - twin[2].detach()), atol=1e-6)


def test_allora_refuses_dropout_and_has_no_scaling():
    with pytest.raises(ValueError, match="no dropout"):
        make_config("allora", dropout=0.1, targets=("0",))
    model = _mlp()
    inject(model, make_config("allora", r=4, alpha=32.0, targets=TARGETS))
    assert all(m.s == 1.0 for m in methods(model))


# --- LoRA-GGPO -----------------------------------------------------------------------------


def test_ggpo_perturbation_is_used_in_training_and_gone_after_the_step(tmp_path):
    model, x = _mlp(), torch.randn(5, 12)
    inject(model, make_config("lora_ggpo", r=3, rho_g=0.5, rho_w=0.5, targets=TARGETS))
    perturb(model)
    ms = methods(model)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01)
    model.eval()
    clean = model(x).detach()
    model.train()
    noisy = model(x)
    assert (noisy - clean).abs().max() > 1e-4  # trained at a perturbed point
    assert torch.equal(model(x), noisy)  # one perturbation per optimizer step
    noisy.pow(2).mean().backward()
    protocol.before_step(model, opt)
    m = ms[0]
    assert torch.allclose(m.gnorm_A, m.A.grad.norm(dim=1)) and torch.allclose(
        m.gnorm_B, m.B.grad.norm(dim=1)
    )
    sa, _ = m.sigmas()
    assert torch.allclose(sa, (0.5 * m.gnorm_A + 0.5 * m.A.detach().norm(dim=1)) / 12**0.5)
    opt.step()
    protocol.after_step(model, opt)
    assert all(mm.noise is None for mm in ms)
    save_adapter(model, tmp_path)
    fresh = _mlp()
    load_adapter(fresh, tmp_path)
    model.eval()
    assert torch.equal(fresh(x), model(x))  # the file holds the clean factors only
    from safetensors.torch import load_file

    keys = {k.rsplit(".", 1)[-1] for k in load_file(tmp_path / "adapter.safetensors")}
    assert keys == {"A", "B", "gnorm_A", "gnorm_B"}


def test_every_new_method_trains_on_the_zoo_with_protocol_hooks():
    """One protocol loop per method on a fused-qkv host: hooks, resizes and method
    optimizers run together, and the loss they minimise goes down."""
    for name in NEW:
        model, x, targets, slices = build("fused_qkv")
        extra = {"diffora": {"search_steps": 1}, "lora_squeeze": {"target_r": 1, "anneal_steps": 2},
                 "increlora": {"warmup": 0, "interval": 1}}.get(name, {})
        inject(model, make_config(name, r=2, targets=targets, slices=slices, **extra))
        perturb(model)
        opt = protocol.method_optimizer(model, lr=1e-2) or torch.optim.AdamW(
            protocol.param_groups(model, 1e-2, 0.01)
        )
        before = model(x).detach()
        model.train()
        _train(model, opt, 3, x)
        protocol.finish(model, opt)
        model.eval()
        after = model(x).detach()
        assert (after - before).abs().max() > 1e-6, name
        assert after.pow(2).mean() < before.pow(2).mean(), name
