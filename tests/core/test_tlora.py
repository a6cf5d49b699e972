"""TLoRA: ``W0 T + Delta`` with T a tensor-ring matrix and Delta a tensor ring / train,
both contracted here entry by entry from the paper's trace formulas."""

import itertools

import pytest
import torch
from torch import nn

from lorakit.core import inject, make_config, methods
from lorakit.core.contract import perturb
from lorakit.core.methods.tlora import factorize


def _steps(model, x, n=3, lr=0.05):
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    for _ in range(n):
        opt.zero_grad()
        (model(x) - 1.0).pow(2).mean().backward()
        opt.step()


def little_endian(flat: int, modes) -> list[int]:
    """``flat = i_1 + n_1 i_2 + n_1 n_2 i_3 + ...`` -> ``[i_1, i_2, ...]``."""
    out = []
    for n in modes:
        out.append(flat % n)
        flat //= n
    return out


def trm_by_hand(cores, modes) -> torch.Tensor:
    d = 1
    for n in modes:
        d *= n
    t = torch.zeros(d, d, dtype=torch.float64)
    for i, j in itertools.product(range(d), range(d)):
        ii, jj = little_endian(i, modes), little_endian(j, modes)
        prod = torch.eye(cores[0].shape[2], dtype=torch.float64)
        for k, a in enumerate(cores):
            prod = prod @ a[ii[k], jj[k]].double()
        t[i, j] = torch.trace(prod)
    return t


def ring_by_hand(cores, out_modes, in_modes) -> torch.Tensor:
    d_out = int(torch.tensor(out_modes).prod())
    d_in = int(torch.tensor(in_modes).prod())
    delta = torch.zeros(d_out, d_in, dtype=torch.float64)
    n = len(out_modes)
    for i, j in itertools.product(range(d_out), range(d_in)):
        idx = little_endian(i, out_modes) + little_endian(j, in_modes)
        prod = torch.eye(cores[0].shape[1], dtype=torch.float64)
        for k, c in enumerate(cores):
            prod = prod @ c[idx[k]].double()
        assert prod.shape[0] == prod.shape[1]
        delta[i, j] = torch.trace(prod)
    assert len(cores) == 2 * n
    return delta


@pytest.mark.parametrize("form", ["ring", "train"])
def test_tlora_weight_after_steps_is_w0_t_plus_tensor_ring_residual(form):
    torch.manual_seed(0)
    lin = nn.Linear(24, 8)
    w0, b0 = lin.weight.detach().clone().double(), lin.bias.detach().clone()
    model = nn.Sequential(lin)
    cfg = make_config("tlora", r=2, transform_rank=3, residual_form=form, targets=("0",))
    inject(model, cfg)
    x = torch.randn(16, 24)
    _steps(model, x)
    m = methods(model)[0]
    assert m.in_modes == (6, 4) and m.out_modes == (4, 2)
    cores = [c.detach() for c in m.residual]
    assert cores[0].abs().min() > 0  # the zero-initialised core trained
    t = trm_by_hand([a.detach() for a in m.transform], m.in_modes)
    assert (t - torch.eye(24, dtype=t.dtype)).abs().max() > 1e-3  # the transform moved
    delta = ring_by_hand(cores, m.out_modes, m.in_modes)
    w = w0 @ t + delta
    torch.testing.assert_close(model(x), (x.double() @ w.T).float() + b0, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("form", ["ring", "train"])
def test_tensor_shapes_and_parameter_count(form):
    lin = nn.Sequential(nn.Linear(12, 8))
    r, rt = 3, 2
    inject(lin, make_config("tlora", r=r, transform_rank=rt, residual_form=form, targets=("0",)))
    m = methods(lin)[0]
    assert [tuple(a.shape) for a in m.transform] == [(4, 4, rt, rt), (3, 3, rt, rt)]
    left, right = (1, 1) if form == "train" else (r, r)
    shapes = [(4, left, r), (2, r, r), (4, r, r), (3, r, right)]
    assert [tuple(c.shape) for c in m.residual] == shapes
    expected = rt * rt * (16 + 9) + sum(a * b * c for a, b, c in shapes)
    assert sum(p.numel() for p in m.parameters()) == expected
    down, up = m.residual_factors()
    assert down.shape == (left * r, 12) and up.shape == (8, left * r)  # rank R^2, or R


def test_transform_starts_at_identity_and_becomes_full_rank_and_dense():
    model = nn.Sequential(nn.Linear(64, 48))
    inject(model, make_config("tlora", order=3, transform_rank=3, targets=("0",)))
    m = methods(model)[0]
    torch.testing.assert_close(m.transform_matrix(), torch.eye(64), atol=1e-6, rtol=0)
    assert m.delta_weight().abs().max() < 1e-5  # Proposition 1 and B_1 = 0
    perturb(model)
    t = m.transform_matrix()
    assert torch.linalg.matrix_rank(t) == 64 and (t != 0).all()  # full rank, dense
    assert sum(a.numel() for a in m.transform) < 64 * 64 // 8  # yet cheap


def test_factorize_and_a_layer_that_cannot_be_split():
    assert factorize(768, 2) == (32, 24) and factorize(72, 3) == (6, 4, 3)
    assert factorize(7, 2) == (7, 1)
    with pytest.raises(ValueError, match="d_in=13 of layer 0 splits only into"):
        inject(nn.Sequential(nn.Linear(13, 8)), make_config("tlora", targets=("0",)))


@pytest.mark.parametrize("tokens", [3, 40])
def test_token_path_and_formed_update_agree(tokens):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 8))
    inject(model, make_config("tlora", r=2, targets=("0",)))
    perturb(model)
    m = methods(model)[0]
    x = torch.randn(tokens, 12)
    torch.testing.assert_close(m.delta(x), x @ m.delta_weight().T, atol=1e-5, rtol=1e-5)


def test_identity_regularizer_is_the_papers_sum_of_slice_norms():
    model = nn.Sequential(nn.Linear(12, 8))
    inject(model, make_config("tlora", transform_rank=2, identity_reg=0.5, targets=("0",)))
    m = methods(model)[0]
    assert m.regularizer().item() == 0.0
    perturb(model)
    total = 0.0
    for a in m.transform:
        for ra, rb in itertools.product(range(2), range(2)):
            total += (a[:, :, ra, rb] - torch.eye(a.shape[0]) / 2).norm().item()
    assert m.regularizer().item() == pytest.approx(0.5 * total, rel=1e-5)
    plain = nn.Sequential(nn.Linear(12, 8))
    inject(plain, make_config("tlora", targets=("0",)))
    assert methods(plain)[0].regularizer() is None
