"""Bayesian-LoRA (``core/methods/bayesian_lora.py``) pinned where mutation testing (``bash
.ci/mutate core/methods/bayesian_lora.py``) found it untested: the hard-concrete gate's
probability of being open (``p_open``, which decides the evaluation gates), the prior,
``bop_penalty`` times the expected bit operations over the dense layer's, and the grid of a
coarsest level wider than 2 bits. All are computed here from the definitions (Louizos et al.
2018; the module docstring), not from the module."""

import math

import pytest
import torch

from lorakit.core import regularization_loss
from lorakit.core.methods.bayesian_lora import gated_quantize, p_open, sample_gate

BETA, GAMMA, ZETA = 2 / 3, -0.1, 1.1  # the paper's temperature and stretch interval


def _p_nonzero(log_alpha: float) -> float:
    """``P(z > 0)`` of ``z = clamp(sigmoid((logit u + log_alpha) / beta) (zeta - gamma) +
    gamma, 0, 1)``: ``z > 0`` iff the sigmoid exceeds ``q = -gamma / (zeta - gamma)``, i.e.
    ``logit u > beta logit q - log_alpha``, of probability ``sigmoid(log_alpha - beta logit q)``."""
    q = -GAMMA / (ZETA - GAMMA)
    return 1 / (1 + math.exp(-(log_alpha - BETA * math.log(q / (1 - q)))))


@pytest.mark.parametrize("log_alpha", [-2.0, -1.0, 0.0, 1.5])
def test_p_open_is_the_probability_that_a_sampled_gate_is_not_zero(log_alpha):
    want = _p_nonzero(log_alpha)
    assert float(p_open(torch.tensor(log_alpha))) == pytest.approx(want, abs=1e-6)
    g = torch.Generator().manual_seed(0)  # the same gate sampled by hand, 200k times
    u = torch.rand(200_000, generator=g, dtype=torch.float64)
    z = (torch.sigmoid((u.log() - (-u).log1p() + log_alpha) / BETA) * (ZETA - GAMMA) + GAMMA)
    assert float((z.clamp(0, 1) > 0).double().mean()) == pytest.approx(want, abs=0.005)
    torch.manual_seed(0)  # and the module's sampler agrees
    drawn = sample_gate(torch.full((200_000,), log_alpha))
    assert float((drawn > 0).double().mean()) == pytest.approx(want, abs=0.005)


def test_evaluation_gates_open_where_p_open_passes_the_threshold(one_layer):
    """log_alpha = -1: P(open) = sigmoid(-1 - (2/3) log(1/11)) = 0.645 > 0.5 (open);
    log_alpha = -2: 0.400 (closed)."""
    assert _p_nonzero(-1.0) > 0.6 and _p_nonzero(-2.0) < 0.45
    model, m, _, _ = one_layer("bayesian_lora", r=3)
    with torch.no_grad():
        m.rank_logit.copy_(torch.tensor([-1.0, -2.0, 3.0]))
    model.eval()
    assert m.learned()["rank"] == 2
    assert torch.equal(m.gate(m.rank_logit.detach()), torch.tensor([1.0, 0.0, 1.0]))


def test_the_prior_is_the_expected_bit_operations_over_the_dense_layers(one_layer):
    """``bop_penalty * sum_i P(z_i) (d_in E[b_A] + d_out E[b_B]) act / (d_out d_in 32 act)``
    with ``E[b] = 2 + sum_l P(g_4 .. g_l all open) (b_l - b_(l-1))``."""
    rank = [0.5, -1.0]
    bits_a, bits_b = [2.0, 1.0, -0.5, -3.0], [0.0, 3.0, 1.0, 2.0]
    model, m, _, _ = one_layer("bayesian_lora", 6, 5, r=2, bop_penalty=0.3, act_bits=8)
    with torch.no_grad():
        m.rank_logit.copy_(torch.tensor(rank))
        m.bit_logit_A.copy_(torch.tensor(bits_a))
        m.bit_logit_B.copy_(torch.tensor(bits_b))

    def expected_bits(logits):
        levels, total, chain = (2, 4, 8, 16, 32), 2.0, 1.0
        for la, lo, hi in zip(logits, levels[:-1], levels[1:], strict=True):
            chain *= _p_nonzero(la)
            total += chain * (hi - lo)
        return total

    e_bops = sum(_p_nonzero(la) for la in rank) * (
        6 * expected_bits(bits_a) + 5 * expected_bits(bits_b)) * 8
    want = 0.3 * e_bops / (5 * 6 * 32 * 8)
    with torch.no_grad():
        assert float(m.regularizer()) == pytest.approx(want, rel=1e-5)
        assert float(regularization_loss(model)) == pytest.approx(want, rel=1e-5)


def test_the_coarsest_level_is_a_symmetric_grid_of_its_own_width():
    """With levels (4, 32) and the gate closed, ``Q(M)`` is ``M`` on the 4-bit grid
    ``step round(M / step)``, ``step = max |M| / (2^3 - 1)``; open, it is ``M``."""
    torch.manual_seed(0)
    m = torch.randn(5, 7)
    step = m.abs().max() / 7
    torch.testing.assert_close(gated_quantize(m, torch.zeros(1), (4, 32)),
                               step * torch.round(m / step))  # fmt: skip
    torch.testing.assert_close(gated_quantize(m, torch.ones(1), (4, 32)), m)
