"""DiffoRA (``core/methods/diffora.py``) pinned where mutation testing (``bash .ci/mutate
core/methods/diffora.py``) found it untested: an adapter with a single candidate slot ends
its search like any other (kept, its gate folded into ``B``, the output continuous)."""

import torch
import torch.nn.functional as F

from lorakit.core import protocol


def test_a_single_candidate_is_kept_with_its_gate_folded_in(one_layer):
    model, m, w, b = one_layer("diffora", 5, 4, r=2, alpha=2.0, search_steps=2, keep=0.5)
    x, y = torch.randn(8, 5), torch.randn(8, 4)
    opt = torch.optim.Adam(protocol.param_groups(model, 0.05), lr=0.05)
    for step in range(3):
        opt.zero_grad()
        (model(x) - y).pow(2).mean().backward()
        opt.step()
        with torch.no_grad():
            gate = torch.sigmoid(m.beta) if bool(m.searching) else 1.0
            relaxed = F.linear(x, w + gate * (m.B @ m.A), b)  # s = alpha / r = 1
            torch.testing.assert_close(model(x), relaxed, atol=1e-6, rtol=1e-6)
        protocol.after_step(model, opt)
        assert bool(m.searching) == (step == 0)  # discretised after search_steps = 2 steps
        with torch.no_grad():  # max(1, ceil(0.5 * 1)) = 1 slot kept: continuous at the switch
            torch.testing.assert_close(model(x), relaxed, atol=1e-6, rtol=1e-6)
    assert m.r == 2 and float(m.beta.detach()) != 0.0
