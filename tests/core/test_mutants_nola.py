"""NOLA (``core/methods/nola.py``) pinned where mutation testing (``bash .ci/mutate
core/methods/nola.py``) found it untested: the init scale of the coefficients (``c_a ~ N(0,
1/k)`` so that ``A`` has LoRA's Kaiming scale; ``c_b = 0``), the bases' shapes and bounds,
and the config limits."""

import math

import pytest
import torch

from lorakit.core import make_config


def test_coefficients_start_with_variance_one_over_k_and_b_at_zero(one_layer):
    k = 4096
    m = one_layer("nola", 12, 8, r=2, k=k).m
    std = float(m.c_a.detach().std())
    # the sample std of 4096 standard normals is within 5 % of 1 with overwhelming odds
    assert abs(std * math.sqrt(k) - 1.0) < 0.05
    assert abs(float(m.c_a.detach().mean())) < 4 / k  # 4 standard errors of the mean
    assert torch.equal(m.c_b.detach(), torch.zeros(k))


def test_bases_are_kaiming_uniform_of_their_own_fan_in(one_layer):
    m = one_layer("nola", 12, 8, r=3, k=64).m
    a, b = m.bases.A, m.bases.B
    assert a.shape == (64, 3, 12) and b.shape == (64, 8, 3)
    for bases, fan_in in ((a, 12), (b, 3)):
        bound = math.sqrt(6.0 / fan_in)
        assert float(bases.abs().max()) <= bound
        assert float(bases.abs().max()) > 0.95 * bound  # uniform: the edge is reached
        assert float(bases.var()) == pytest.approx(bound**2 / 3, rel=0.1)


@pytest.mark.parametrize("k", [0, -3, 2.0])
def test_k_must_be_a_positive_integer(k):
    with pytest.raises(ValueError, match="nola: k .* must be a positive integer"):
        make_config("nola", k=k)


def test_one_basis_is_allowed():
    assert make_config("nola", k=1).k == 1


def test_defaults_are_the_documented_ones():
    cfg = make_config("nola")
    got = (cfg.k, cfg.r, cfg.alpha, cfg.seed, cfg.save_bases)
    assert got == (64, 8, 8.0, 0, False)  # the module docstring's defaults
