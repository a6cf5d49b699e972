"""RandLoRA (``core/methods/randlora.py``) pinned where mutation testing (``bash .ci/mutate
core/methods/randlora.py``) found it untested: the initial state (``lambda = 0``, ``gamma =
1 / max(d_in, d_out)``) and the defaults shared with PEFT (r = 32, alpha = 640)."""

import torch
from torch import nn

from lorakit.core import inject, make_config, methods


def test_initial_scalings_and_defaults():
    cfg = make_config("randlora")
    assert (cfg.r, cfg.alpha, cfg.seed, cfg.save_bases) == (32, 640.0, 0, False)
    for d_in, d_out in ((12, 20), (20, 12)):
        model = nn.Sequential(nn.Linear(d_in, d_out))
        report = inject(model, make_config("randlora", r=5, targets=("0",)))
        m = methods(model)[0]
        n = -(-12 // 5)  # ceil(min / r) = 3 bases
        assert report.trainable == n * (5 + 12)
        assert torch.equal(m.lam, torch.zeros(5, n))
        assert torch.equal(m.gamma, torch.full((n, 12), 1.0 / 20))  # 1 / max(d_in, d_out)
        assert torch.equal(m.delta_weight(), torch.zeros(d_out, d_in))
