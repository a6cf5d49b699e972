"""The sign convention of the SVD inits: each singular pair is negated together so that the
largest-magnitude entry of its left vector is positive. LAPACK picks the signs by code path
and thread count, so without the rule an SVD-built init (LARGO's ``B0`` / ``A0``, ...)
differs by signs between machines and a rebuilt run no longer matches the shipped one."""

import pytest
import torch

from lorakit.core.method import canonical_signs, thin_svd

SHAPES = [(12, 40), (40, 12), (16, 16)]


def _w(shape, dtype=torch.float64):
    return torch.randn(*shape, dtype=dtype, generator=torch.Generator().manual_seed(0))


def _follows_the_convention(u):
    """Every column's largest-|.| entry (the first on a tie) is positive."""
    idx = u.abs().argmax(0)
    return bool((u[idx, torch.arange(u.shape[1])] > 0).all())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_thin_svd_gives_positive_largest_entries_and_the_same_product(shape, dtype):
    w = _w(shape, dtype)
    u, s, vh = thin_svd(w)
    assert _follows_the_convention(u)
    torch.testing.assert_close(u @ torch.diag(s) @ vh, w)


@pytest.mark.parametrize("shape", SHAPES)
def test_thin_svd_is_the_same_through_the_tall_and_the_wide_branch(shape):
    """thin_svd decomposes a wide ``w`` through ``w.T``; LAPACK on ``w`` itself (the other
    branch) then made the same factors up to pair signs. With the convention, equal."""
    w = _w(shape)
    u, s, vh = thin_svd(w)
    if shape[0] >= shape[1]:  # thin_svd took w itself: take the transposed path here
        v2, s2, uh2 = torch.linalg.svd(w.T, full_matrices=False)
        u2, vh2 = uh2.T, v2.T
    else:
        u2, s2, vh2 = torch.linalg.svd(w, full_matrices=False)
    u2, vh2 = canonical_signs(u2, vh2)
    torch.testing.assert_close(s, s2)
    torch.testing.assert_close(u, u2)
    torch.testing.assert_close(vh, vh2)


def test_canonical_signs_undoes_any_pair_sign_flips_and_keeps_the_product_bit_exact():
    w = _w((20, 9))
    u, s, vh = torch.linalg.svd(w, full_matrices=False)
    flips = torch.tensor([1.0, -1, -1, 1, -1, 1, 1, -1, -1], dtype=w.dtype)
    cu, cvh = canonical_signs(u, vh)
    fu, fvh = canonical_signs(u * flips, flips[:, None] * vh)
    assert torch.equal(cu, fu) and torch.equal(cvh, fvh)
    assert torch.equal(cu @ torch.diag(s) @ cvh, u @ torch.diag(s) @ vh)


def test_canonical_signs_takes_the_first_entry_on_a_tie_and_leaves_zero_columns():
    u = torch.tensor([[-0.5, 0.0], [0.5, 0.0]])
    vh = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    cu, cvh = canonical_signs(u, vh)
    assert torch.equal(cu, torch.tensor([[0.5, 0.0], [-0.5, 0.0]]))
    assert torch.equal(cvh, torch.tensor([[-1.0, -2.0], [3.0, 4.0]]))


# --- every SVD whose factors become adapter weights or carried state uses the convention ---


def _sites():
    """``name -> left factor`` of each such SVD, on fixed random inputs."""
    from torch import nn

    from lorakit.core import inject, make_config, methods, protocol
    from lorakit.core.gorp_optim import projector
    from lorakit.core.methods.loftq import svd_factors
    from lorakit.core.methods.lora_squeeze import best_rank_k
    from lorakit.core.sltrain_full import SLTrainWeightsConfig, replace_weights
    from lorakit.core.squeeze import randomized_svd

    w, g = _w((14, 10)), _w((6, 20))
    out = {
        "loftq.svd_factors": lambda: svd_factors(w, 5)[1],
        "loftq.svd_factors (wide)": lambda: svd_factors(w.T, 5)[1],
        "lora_squeeze.best_rank_k": lambda: best_rank_k(w[:, :6], _w((6, 9)), 4)[0],
        "squeeze.randomized_svd": lambda: randomized_svd(w, 5)[0],
        "gorp.projector": lambda: projector(g, g.new_zeros(6, 0), 4),
    }

    def adapted(method, **hyper):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(12, 8))
        inject(model, make_config(method, targets=("0",), **hyper))
        x, y = torch.randn(24, 12), torch.randn(24, 8)
        protocol.prepare(model, [None], lambda mod, _b: (mod(x) - y).pow(2).mean())
        return methods(model)[0]

    def sltrain():
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(12, 8))
        replace_weights(model, SLTrainWeightsConfig(r=4, alpha=4.0, density=0.2, targets=("0",)))
        return model[0].B.detach()

    out["largo (B0)"] = lambda: adapted("largo", r=4).B0
    out["lora_sb (B after prepare)"] = lambda: adapted("lora_sb", r=4).B
    out["sltrain_full (svd init B)"] = sltrain
    return out


@pytest.mark.parametrize("site", list(_sites()))
def test_svd_built_factors_follow_the_sign_convention(site):
    assert _follows_the_convention(_sites()[site]().double())
