"""Uni-LoRA (``core/methods/unilora.py``) pinned where mutation testing (``bash .ci/mutate
core/methods/unilora.py``) found it untested: the index assignment when ``theta_d_length``
divides the number of LoRA entries (every slot used equally often, the same draws as PEFT),
a one-entry ``theta``, and the defaults shared with PEFT."""

import copy
from collections import Counter

import pytest
import torch
from torch import nn

from lorakit.core import inject, make_config, methods


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(6, 4), nn.Linear(4, 6)  # D = 2 r (6 + 4) = 40 at r = 2

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


def _ours(length, seed=3):
    torch.manual_seed(0)
    model = _Net()
    inject(model, make_config("unilora", r=2, theta_d_length=length, proj_seed=seed,
                              targets=("fc1", "fc2")))
    model(torch.randn(1, 6))  # indices are assigned at the first forward
    return model, methods(model)


@pytest.mark.parametrize("length", [8, 40, 7, 1])
def test_every_theta_entry_is_used_floor_or_ceil_of_d_over_length_times(length):
    _, ms = _ours(length)
    idx = torch.cat([t.flatten() for m in ms for t in (m.idx_A, m.idx_B)]).tolist()
    assert len(idx) == 40
    counts = Counter(idx)
    assert set(counts) == set(range(length))  # every entry of theta is used
    assert set(counts.values()) <= {40 // length, -(-40 // length)}
    for m in ms:  # scale 1 / sqrt(count of the entry)
        for i, s in ((m.idx_A, m.scale_A), (m.idx_B, m.scale_B)):
            want = torch.tensor([counts[j] ** -0.5 for j in i.flatten().tolist()])
            torch.testing.assert_close(s.flatten(), want.to(s.dtype))


def test_a_length_dividing_the_entries_draws_as_peft():
    peft = pytest.importorskip("peft")
    torch.manual_seed(0)
    base = _Net()
    cfg = peft.UniLoraConfig(r=2, theta_d_length=8, proj_seed=3, target_modules=["fc1", "fc2"])
    pm = peft.get_peft_model(copy.deepcopy(base), cfg)
    _, ms = _ours(8)
    for name, m in zip(("fc1", "fc2"), ms, strict=True):
        layer = pm.base_model.model.get_submodule(name)
        assert torch.equal(m.idx_A, layer.unilora_indices_A["default"])
        assert torch.equal(m.idx_B, layer.unilora_indices_B["default"])


def test_defaults_and_limits():
    cfg = make_config("unilora")
    assert (cfg.r, cfg.theta_d_length, cfg.proj_seed, cfg.init_bound) == (4, 256, 42, 0.02)
    make_config("unilora", theta_d_length=1)
    for bad in (0, -1, 2.0):
        with pytest.raises(ValueError, match="theta_d_length"):
            make_config("unilora", theta_d_length=bad)
