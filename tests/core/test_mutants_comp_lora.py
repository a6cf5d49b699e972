"""Comp-LoRA (``core/methods/comp_lora.py``) pinned where mutation testing (``bash .ci/mutate
core/methods/comp_lora.py``) found it untested: the energy limits, the protected rank of a
layer whose singular values are all below 1, and which side keeps protected directions."""

import pytest
import torch

from lorakit.core import make_config
from lorakit.core.methods.comp_lora import protected_rank


@pytest.mark.parametrize("energy", [0.0, 1.0, 1.5])
def test_energy_must_lie_strictly_between_0_and_1(energy):
    with pytest.raises(ValueError, match="energy must be in"):
        make_config("comp_lora", energy=energy)


def test_protected_rank_of_small_singular_values():
    """s = (0.3, 0.2, 0.1): S^2 fractions 0.09/0.14 = 0.64, 0.13/0.14 = 0.93, 1; 90 % of the
    energy needs the top 2 (the total is 0.14, not 1)."""
    s = torch.tensor([0.3, 0.2, 0.1])
    assert protected_rank(s, None, 0.9) == 2
    assert protected_rank(s, None, 0.5) == 1
    assert protected_rank(s, 1, 0.9) == 1  # k given: used as is


@pytest.mark.parametrize("side, widths", [("output", (2, 0)), ("input", (0, 2)), ("both", (2, 2))])
def test_only_the_chosen_side_keeps_protected_directions(side, widths, one_layer):
    m = one_layer("comp_lora", r=2, k=2, side=side).m
    assert (m.U_k.shape, m.V_k.shape) == ((5, widths[0]), (6, widths[1]))
