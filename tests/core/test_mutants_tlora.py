"""TLoRA (``core/methods/tlora.py``) pinned where mutation testing (``bash .ci/mutate
core/methods/tlora.py``) found it untested: ``order`` 1 allowed (0 refused), the residual
cores' muP scale ``sigma = sqrt(r_right) / (mode * r_left)``, and ``W0`` kept out of the
saved state."""

import math

import pytest
import torch
from torch import nn

from lorakit.core import inject, make_config, methods


def test_order_one_is_allowed_and_zero_refused():
    make_config("tlora", order=1)
    for bad in (0, -1):
        with pytest.raises(ValueError, match="order must be a positive integer"):
            make_config("tlora", order=bad)


def test_residual_cores_start_at_the_mup_scale_and_w0_is_not_saved():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64))
    inject(model, make_config("tlora", r=8, order=2, targets=("0",)))
    m = methods(model)[0]
    modes = m.out_modes + m.in_modes  # (8, 8, 8, 8), ring: every rank 8
    assert modes == (8, 8, 8, 8)
    assert not m.residual[0].any()  # B_1 = 0
    for k in range(1, 4):
        sigma = math.sqrt(8) / (modes[k] * 8)
        core = m.residual[k].detach()
        assert abs(float(core.std()) / sigma - 1) < 0.1, k  # 512 draws
        assert not torch.equal(core, core.round())  # not integer-valued
    keys = model.state_dict().keys()
    assert not any(k.endswith("w0") for k in keys)
    assert any("transform" in k for k in keys)
