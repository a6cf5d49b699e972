"""GORP: projected Adam on full weights, the task basis Q, exact resume, the contract part."""

import io

import pytest
import torch
from torch import nn

from lorakit.core import inject, make_config, methods, protocol
from lorakit.core.gorp_optim import GORPAdam, energy_directions, projector
from lorakit.core.methods.gorp import full_weights, memory_report
from lorakit.core.zoo import build


def _gorp_model(seed=0, **hyper):
    torch.manual_seed(seed)
    model, x, targets, _ = build("linear")  # fc1 (64x32), fc2 (32x64)
    inject(model, make_config("gorp", r=2, alpha=4.0, targets=targets, **hyper))
    return model, x


def _task_batch(task: int, step: int, x):
    g = torch.Generator().manual_seed(1000 * task + step)
    xb = x + 0.5 * torch.randn(x.shape, generator=g)
    w = torch.randn(32, 32, generator=torch.Generator().manual_seed(task))
    return xb, torch.tanh(xb @ w)


def _train(model, opt, task, steps, x, start=0):
    for i in range(start, start + steps):
        xb, y = _task_batch(task, i, x)
        opt.zero_grad()
        (model(xb) - y).pow(2).mean().backward()
        opt.step()


def _eye_err(m):
    return (m.T @ m - torch.eye(m.shape[1])).abs().max().item()


def test_projection_and_task_basis_are_orthonormal_and_disjoint():
    model, x = _gorp_model(r_g=6, T=2)
    opt = protocol.method_optimizer(model, lr=1e-2)
    for task in range(2):
        _train(model, opt, task, 5, x)
        for _, w in full_weights(model):
            st = opt.state[w]
            assert st["proj"].shape == (32, 6) and _eye_err(st["proj"]) < 1e-5
            if st["q"].shape[1]:
                assert (st["q"].T @ st["proj"]).abs().max() < 1e-5  # P avoids Q
        sizes = opt.end_task()
        assert all(k > 0 for k in sizes.values())
    for _, w in full_weights(model):
        q = opt.state[w]["q"]
        assert 2 <= q.shape[1] <= 32 and _eye_err(q) < 1e-5


def test_projector_lies_in_the_complement_and_spans_the_top_directions():
    torch.manual_seed(0)
    q = torch.linalg.qr(torch.randn(12, 3))[0]
    g = torch.randn(12, 20)
    p = projector(g, q, 4)
    assert p.shape == (12, 4) and _eye_err(p) < 1e-5 and (q.T @ p).abs().max() < 1e-5
    rest = g - q @ (q.T @ g)  # P holds the top-4 left singular space of the Q-free part
    u = torch.linalg.svd(rest)[0][:, :4]
    assert torch.allclose(p @ (p.T @ u), u, atol=1e-4)
    assert projector(g, q.new_zeros(12, 0), 12) is None  # whole space: identity
    assert projector(g, q, 9).shape == (12, 9)  # all of the complement


def test_energy_directions_keep_the_asked_fraction():
    u = torch.linalg.qr(torch.randn(8, 8, generator=torch.Generator().manual_seed(1)))[0]
    lifted = u[:, :4] @ torch.diag(torch.tensor([3.0, 2.0, 1.0, 0.1])) @ torch.linalg.qr(
        torch.randn(10, 4, generator=torch.Generator().manual_seed(2))
    )[0].T
    # energies 9, 4, 1, 0.01 of 14.01: 0.90 needs two directions, 0.95 three
    assert energy_directions(lifted, lifted.new_zeros(8, 0), 0.9).shape[1] == 2
    assert energy_directions(lifted, lifted.new_zeros(8, 0), 0.95).shape[1] == 3
    new = energy_directions(lifted, u[:, :1], 0.9)  # the part already in Q is not re-added
    assert (u[:, :1].T @ new).abs().max() < 1e-5


@pytest.mark.parametrize("shape", [(10, 6), (6, 10)])
def test_full_rank_subspace_equals_torch_adam_exactly(shape):
    torch.manual_seed(0)
    w0, a0 = torch.randn(shape), torch.randn(3, 4)
    w1, a1 = nn.Parameter(w0.clone()), nn.Parameter(a0.clone())
    w2, a2 = nn.Parameter(w0.clone()), nn.Parameter(a0.clone())
    hyper = dict(lr=3e-2, betas=(0.8, 0.95), eps=1e-6)
    ours = GORPAdam([w1], [a1], r_g=min(shape), T=2, **hyper)
    ref = torch.optim.Adam([w2, a2], foreach=False, **hyper)
    for step in range(6):
        g = torch.Generator().manual_seed(step)
        gw, ga = torch.randn(shape, generator=g), torch.randn(3, 4, generator=g)
        w1.grad, a1.grad, w2.grad, a2.grad = gw.clone(), ga.clone(), gw.clone(), ga.clone()
        ours.step()
        ref.step()
        assert torch.equal(w1, w2) and torch.equal(a1, a2)
    mine, theirs = ours.state[w1], ref.state[w2]
    t = (lambda m: m.T) if shape[0] > shape[1] else (lambda m: m)  # ours is stored m x n
    assert torch.equal(t(mine["exp_avg"]), theirs["exp_avg"])
    assert torch.equal(t(mine["exp_avg_sq"]), theirs["exp_avg_sq"])
    assert mine["step"] == int(theirs["step"]) == 6


def test_adam_state_lives_in_the_projected_space():
    model, x = _gorp_model(r_g=5)
    opt = protocol.method_optimizer(model, lr=1e-2)
    report = memory_report(opt)  # before the first step too
    assert [r["moments"] for r in report["rows"]] == [2 * 5 * 64, 2 * 5 * 64]
    assert report["adam"] == 2 * (2 * 32 * 64)
    _train(model, opt, 0, 2, x)
    for _, w in full_weights(model):  # both orientations: m = 32 <= n = 64
        assert opt.state[w]["exp_avg"].shape == (5, 64)
        assert opt.state[w]["exp_avg_sq"].shape == (5, 64)
    # plain Adam state per LoRA tensor, same shape as the tensor
    for m in methods(model):
        assert opt.state[m.A]["exp_avg"].shape == m.A.shape
    assert make_config("gorp", r=3, targets=("fc1",)).rank_g() == 12  # default 4 r


def test_later_updates_have_no_component_in_the_stored_space():
    model, x = _gorp_model(r_g=4, T=3)
    opt = protocol.method_optimizer(model, lr=1e-2)
    _train(model, opt, 0, 6, x)
    protocol.end_task(model, opt)  # also merges task 0's LoRA into W
    named = full_weights(model)
    before = {n: w.detach().clone() for n, w in named}
    _train(model, opt, 1, 7, x)
    for n, w in named:
        dw = w.detach() - before[n]
        dw = dw.T if dw.shape[0] > dw.shape[1] else dw  # m x n, as Q is stored
        q = opt.state[w]["q"]
        assert q.shape[1] > 0 and dw.abs().max() > 1e-4
        assert (q.T @ dw).abs().max() < 1e-5 * dw.abs().max(), n


def test_end_task_merges_the_adapter_and_starts_a_fresh_one():
    model, x = _gorp_model(r_g=4)
    opt = protocol.method_optimizer(model, lr=1e-2)
    _train(model, opt, 0, 4, x)
    out = model(x).detach()
    protocol.end_task(model, opt)
    assert torch.allclose(model(x), out, atol=1e-5)  # the adapter went into W
    assert all(not m.B.any() for m in methods(model))
    assert all(not opt.state.get(m.A) for m in methods(model))  # fresh moments
    keep, _ = _gorp_model(r_g=4, merge_lora_per_task=False)
    opt2 = protocol.method_optimizer(keep, lr=1e-2)
    _train(keep, opt2, 0, 4, x)
    protocol.end_task(keep, opt2)
    assert all(m.B.any() for m in methods(keep))


def _snapshot(model, opt):
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buf)
    return buf.getvalue()


def test_resume_from_state_dict_is_bit_exact():
    def run(interrupt: bool):
        model, x = _gorp_model(seed=3, r_g=4, T=3)
        opt = protocol.method_optimizer(model, lr=1e-2)
        _train(model, opt, 0, 5, x)
        protocol.end_task(model, opt)
        _train(model, opt, 1, 4, x)
        if interrupt:  # a new process: fresh model and optimizer, restored from bytes
            saved = torch.load(io.BytesIO(_snapshot(model, opt)))
            model, x = _gorp_model(seed=99, r_g=4, T=3)
            opt = protocol.method_optimizer(model, lr=1e-2)
            model.load_state_dict(saved["model"])
            opt.load_state_dict(saved["opt"])
        _train(model, opt, 1, 5, x, start=4)  # crosses a refresh of P (T = 3)
        return model, opt

    (m1, o1), (m2, o2) = run(False), run(True)
    for (n, a), b in zip(m1.state_dict().items(), m2.state_dict().values(), strict=True):
        assert torch.equal(a, b), n
    s1, s2 = o1.state_dict()["state"], o2.state_dict()["state"]
    assert s1.keys() == s2.keys()
    for i in s1:
        for key, v in s1[i].items():
            assert torch.equal(v, s2[i][key]) if torch.is_tensor(v) else v == s2[i][key]


def test_errors_are_one_line():
    with pytest.raises(ValueError, match="T must be"):
        make_config("gorp", targets=("fc1",), T=0)
    with pytest.raises(ValueError, match="energy_cl"):
        make_config("gorp", targets=("fc1",), energy_cl=1.5)
    with pytest.raises(ValueError, match="r_g"):
        make_config("gorp", targets=("fc1",), r_g=-1)
    model, _ = _gorp_model(full_targets=("nope",))
    with pytest.raises(ValueError, match="full_targets pattern 'nope'"):
        protocol.method_optimizer(model, lr=1e-2)
    model, _ = _gorp_model()
    with pytest.raises(ValueError, match="unknown option.*weight_decay"):
        protocol.method_optimizer(model, lr=1e-2, weight_decay=0.1)
    with pytest.raises(ValueError, match="needs the optimizer"):
        protocol.end_task(model, torch.optim.SGD([nn.Parameter(torch.ones(1))], lr=0.1))
    plain, _, targets, _ = build("linear")
    inject(plain, make_config("lora", targets=targets))
    assert protocol.method_optimizer(plain, lr=1e-2) is None
    protocol.end_task(plain, None)  # no-op for methods without cross-task state


def test_full_targets_may_differ_from_the_adapter_layers():
    model, x = _gorp_model(full_targets=("fc2",))
    opt = protocol.method_optimizer(model, lr=1e-2)
    assert [n for n, _ in full_weights(model)] == ["fc2.base.weight"]
    fc1 = model.fc1.base.weight.detach().clone()
    _train(model, opt, 0, 2, x)
    assert torch.equal(model.fc1.base.weight, fc1)
    assert not model.fc1.base.weight.requires_grad and model.fc2.base.weight.requires_grad


def test_bf16_weights_keep_float32_state_through_a_resume():
    w = nn.Parameter(torch.randn(6, 10).bfloat16())
    opt = GORPAdam([w], [], lr=1e-2, r_g=2)
    for _ in range(2):
        w.grad = torch.randn(6, 10).bfloat16()
        opt.step()
    opt.end_task()
    w.grad = torch.randn(6, 10).bfloat16()
    opt.step()
    saved = opt.state_dict()
    again = GORPAdam([w], [], lr=1e-2, r_g=2)
    again.load_state_dict(saved)
    for key in ("q", "proj", "exp_avg", "exp_avg_sq"):
        assert again.state[w][key].dtype == torch.float32
        assert torch.equal(again.state[w][key], opt.state[w][key]), key



def test_projection_is_refreshed_every_T_steps_only():
    w = nn.Parameter(torch.randn(6, 10))
    opt = GORPAdam([w], [], lr=1e-2, r_g=2, T=3)
    seen = []
    for step in range(7):
        w.grad = torch.randn(6, 10, generator=torch.Generator().manual_seed(step))
        opt.step()
        seen.append(opt.state[w]["proj"])
    same = [seen[i] is seen[i - 1] for i in range(1, 7)]
    assert same == [True, True, False, True, True, False]  # new P at steps 4 and 7
    assert not torch.allclose(seen[0], seen[3])


def test_identity_projection_survives_a_round_trip():
    w = nn.Parameter(torch.randn(4, 5))
    opt = GORPAdam([w], [], lr=1e-2, r_g=4)
    w.grad = torch.randn(4, 5)
    opt.step()
    again = GORPAdam([w], [], lr=1e-2, r_g=4)
    again.load_state_dict(opt.state_dict())
    assert again.state[w]["proj"] is None and again.state[w]["step"] == 1


def test_two_gorp_adapters_the_active_one_or_the_named_one_trains():
    model, x = _gorp_model()
    inject(model, make_config("gorp", r=2, alpha=4.0, targets=("fc1",)), "second")
    from lorakit.core.adapters import adapter_parameters, set_adapter

    set_adapter(model, "second")
    opt = protocol.method_optimizer(model, lr=1e-2)
    lora = {id(p) for g in opt.param_groups if not g["gorp"] for p in g["params"]}
    assert lora == {id(p) for p in adapter_parameters(model, "second")}
    assert [n for n, _ in full_weights(model)] == ["fc1.base.weight"]  # second's targets
    opt = protocol.method_optimizer(model, lr=1e-2, name="default")
    lora = {id(p) for g in opt.param_groups if not g["gorp"] for p in g["params"]}
    assert lora == {id(p) for p in adapter_parameters(model, "default")}
    set_adapter(model, ["default", "second"])
    with pytest.raises(ValueError, match="several gorp adapters"):
        protocol.method_optimizer(model, lr=1e-2)
