"""LoCA's relocation lowers the loss it estimates (issue 24, item 6).

On ``L = 0.5 ||W - T||_F^2`` the loss along one spectral coefficient has curvature exactly
``s^2`` and no cross terms, so the second-order score of a move is the exact loss change.
The first-order score alone (``c (g[q] - g[p])``, the code before the fix) moved most
trained coefficients to worse cells and raised this loss."""

import io

import torch
from torch import nn

from lorakit.core import inject, make_config, methods, protocol
from lorakit.core.methods.loca import dct_matrix

D_OUT, D_IN, S = 8, 10, 0.5


def _model(seed=0, **hyper):
    torch.manual_seed(seed)
    lin = nn.Linear(D_IN, D_OUT, bias=False)
    model = nn.Sequential(lin)
    cfg = dict(n_coef=12, alpha=S, relocate_every=5, relocate_until=40, targets=("0",))
    inject(model, make_config("loca", **{**cfg, **hyper}))
    return model, lin.weight.detach().clone(), torch.randn(D_OUT, D_IN)


def _loss(model, target):
    return 0.5 * (model(torch.eye(D_IN)).T - target).pow(2).sum()


def _spectral_grad(model, w0, target):
    """``dL/dS = s C_out (W - T) C_in^T``, computed from the model's dense weight."""
    with torch.no_grad():
        w = model(torch.eye(D_IN)).T
    return S * dct_matrix(D_OUT) @ (w - target) @ dct_matrix(D_IN).T


def _check_choices(cells, new, coef, g):
    """Each coefficient took its neighbour of lowest exact loss change, when negative (a
    coefficient may lose its cell to a better-scoring one)."""
    taken, claimed = set(cells), set(new) - set(cells)
    for i, (u, v) in enumerate(cells):
        options = {}
        for du, dv in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            q = (u + du, v + dv)
            if 0 <= q[0] < D_OUT and 0 <= q[1] < D_IN and q not in taken:
                options[q] = float(coef[i] * (g[q] - g[u, v]) + S**2 * coef[i] ** 2)
        best = min(options, key=options.get) if options else None
        if new[i] != (u, v):
            assert new[i] == best and options[best] < 0, i
        elif best is not None and options[best] < -1e-6:
            assert best in claimed, i  # it lost the cell to another coefficient


def test_every_relocation_lowers_a_quadratic_loss_by_its_second_order_score():
    model, w0, target = _model()
    m = methods(model)[0]
    opt = torch.optim.Adam([m.coef], lr=0.1)
    model.train()
    moves = 0
    for t in range(40):
        opt.zero_grad()
        _loss(model, target).backward()
        opt.step()
        before = float(_loss(model, target).detach())
        g = _spectral_grad(model, w0, target)  # at the coefficients after the step
        cells = list(zip(m.loc_u.tolist(), m.loc_v.tolist(), strict=True))
        coef = m.coef.detach().clone()
        protocol.after_step(model, opt)
        after = float(_loss(model, target).detach())
        new = list(zip(m.loc_u.tolist(), m.loc_v.tolist(), strict=True))
        moved = [i for i in range(len(cells)) if cells[i] != new[i]]
        # the exact change of this quadratic: c (g[q] - g[p]) + s^2 c^2 per moved coefficient
        score = sum(float(coef[i] * (g[new[i]] - g[cells[i]]) + S**2 * coef[i] ** 2) for i in moved)
        assert abs((after - before) - score) < 1e-4 * max(1.0, abs(score))
        assert after <= before + 1e-6  # a relocation never raises the loss
        if (t + 1) % 5 == 0:  # a relocation step (relocate_every=5)
            _check_choices(cells, new, coef, g)
        else:
            assert not moved
        moves += len(moved)
    assert moves >= 3  # relocations did happen
    assert abs(m.curvature() - S**2) < 1e-5  # the secant estimate of d2L/dS2 is exact here


def test_first_order_score_alone_moves_coefficients_to_worse_cells():
    """The reviewer's check: trained coefficients, the exact gradient, one relocation."""
    losses = {}
    for h in (0.0, S**2):
        model, w0, target = _model(relocate_every=0)
        m = methods(model)[0]
        opt = torch.optim.Adam([m.coef], lr=0.1)
        for _ in range(30):
            opt.zero_grad()
            _loss(model, target).backward()
            opt.step()
        before = float(_loss(model, target).detach())
        with torch.no_grad():
            grad_w = model(torch.eye(D_IN)).T - target  # dL/dW
        n = m.relocate(grad_w, curvature=h)
        losses[h] = (before, float(_loss(model, target).detach()), n)
    before, after, n = losses[0.0]
    assert n > 0 and after > before + 0.1  # first order: most coefficients moved, loss rose
    before, after, n = losses[S**2]
    assert after <= before + 1e-6


def test_no_curvature_estimate_no_move():
    model, _, target = _model(relocate_every=1)
    m = methods(model)[0]
    model.train()
    _loss(model, target).backward()  # coef = 0: the first step's secant has no pair yet
    torch.optim.SGD([m.coef], lr=0.1).step()
    cells = (m.loc_u.clone(), m.loc_v.clone())
    protocol.after_step(model)
    assert m.curvature() is None
    assert torch.equal(m.loc_u, cells[0]) and torch.equal(m.loc_v, cells[1])


def _snapshot(model, opt):
    buf = io.BytesIO()
    torch.save(
        {"m": model.state_dict(), "p": protocol.state_dict(model), "o": opt.state_dict()}, buf
    )
    buf.seek(0)
    return buf


def test_resume_mid_window_scores_and_moves_alike():
    runs = []
    for cut in (None, 7):
        model, _, target = _model(relocate_until=30)
        m = methods(model)[0]
        opt = torch.optim.Adam([m.coef], lr=0.1)
        model.train()
        for t in range(25):
            if t == cut:  # a fresh process: rebuild and load what a checkpoint holds
                buf = _snapshot(model, opt)
                model, _, _ = _model(seed=1, relocate_until=30)
                m = methods(model)[0]
                opt = torch.optim.Adam([m.coef], lr=0.1)
                state = torch.load(buf, weights_only=True)
                model.load_state_dict(state["m"])
                protocol.load_state_dict(model, state["p"])
                opt.load_state_dict(state["o"])
                model.train()
            opt.zero_grad()
            _loss(model, target).backward()
            opt.step()
            protocol.after_step(model, opt)
        runs.append((m.loc_u.clone(), m.loc_v.clone(), m.coef.detach().clone(), m.curvature()))
    (u1, v1, c1, h1), (u2, v2, c2, h2) = runs
    assert torch.equal(u1, u2) and torch.equal(v1, v2) and torch.equal(c1, c2) and h1 == h2



def test_a_loca_file_saved_before_the_curvature_buffers_still_loads(tmp_path):
    """Files written before ``sec_prev/sec_valid/sec_sum`` existed load with fresh sums and
    give the same output; any other missing tensor is still refused."""
    import pytest
    from safetensors.torch import load_file, save_file

    from lorakit.core import load_adapter, save_adapter

    torch.manual_seed(0)
    base = nn.Linear(8, 6)
    model = nn.Sequential(base)
    inject(model, make_config("loca", n_coef=12, alpha=0.5, targets=("0",)))
    with torch.no_grad():
        model[0].adapters["default"].weight.coef.normal_()
    x = torch.randn(3, 8)
    want = model(x)
    save_adapter(model, tmp_path)
    (weights,) = tmp_path.glob("*.safetensors")
    tensors = load_file(weights)
    old = {k: v for k, v in tensors.items() if ".sec_" not in k}
    assert len(old) == len(tensors) - 3
    save_file(old, weights)

    def fresh():
        m = nn.Linear(8, 6)
        m.load_state_dict(base.state_dict())
        return nn.Sequential(m)

    loaded = fresh()
    load_adapter(loaded, tmp_path)
    assert torch.allclose(loaded(x), want, atol=1e-6)
    save_file({k: v for k, v in old.items() if not k.endswith("coef")}, weights)
    with pytest.raises(ValueError, match="missing"):
        load_adapter(fresh(), tmp_path)
