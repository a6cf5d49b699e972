"""VeRA, RandLoRA and Uni-LoRA equal Hugging Face PEFT 0.21.2's given the same tensors."""

import copy

import pytest
import torch
from torch import nn

from lorakit.core import inject, make_config, methods

peft = pytest.importorskip("peft")


class Net(nn.Module):
    """Layers narrower and wider than their input, so both RandLoRA orientations run."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(24, 16), nn.Linear(16, 40), nn.Linear(40, 16)

    def forward(self, x):
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


TARGETS = ["fc1", "fc2", "fc3"]


def _pair(cfg_peft, method, **hyper):
    torch.manual_seed(0)
    base = Net().eval()
    pm = peft.get_peft_model(copy.deepcopy(base), cfg_peft).eval()
    ours = copy.deepcopy(base)
    inject(ours, make_config(method, targets=tuple(TARGETS), **hyper))
    layers = [pm.base_model.model.get_submodule(n) for n in TARGETS]
    return pm, ours.eval(), layers, methods(ours)


@torch.no_grad()
def _randomise(pm, key):
    g = torch.Generator().manual_seed(5)
    for n, p in pm.named_parameters():
        if key in n:
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)


def test_vera_matches_peft():
    cfg = peft.VeraConfig(r=8, target_modules=TARGETS, projection_prng_key=3)
    pm, ours, layers, ms = _pair(cfg, "vera", r=8)
    _randomise(pm, "vera_lambda")
    with torch.no_grad():
        for layer, m in zip(layers, ms, strict=True):
            a, b = layer.vera_A["default"], layer.vera_B["default"]
            m.bases.A.copy_(a[:, : layer.in_features])
            m.bases.B.copy_(b[: layer.out_features])
            m.d.copy_(layer.vera_lambda_d["default"])
            m.b.copy_(layer.vera_lambda_b["default"])
    x = torch.randn(3, 5, 24)
    with pm.disable_adapter():
        base_out = pm(x)
    assert (pm(x) - base_out).abs().max() > 1e-3  # the adapters do act
    torch.testing.assert_close(ours(x), pm(x), rtol=1e-5, atol=1e-6)


def test_randlora_matches_peft():
    cfg = peft.RandLoraConfig(r=4, randlora_alpha=8, target_modules=TARGETS, projection_prng_key=3)
    pm, ours, layers, ms = _pair(cfg, "randlora", r=4, alpha=8)
    _randomise(pm, "randlora_")
    with torch.no_grad():
        for layer, m in zip(layers, ms, strict=True):
            small = min(layer.in_features, layer.out_features)
            big = max(layer.in_features, layer.out_features)
            m.bases.A.copy_(layer.randlora_A["default"][:, :, :small])
            m.bases.B.copy_(layer.randlora_B["default"][:big, : m.n])
            m.lam.copy_(layer.randlora_lambda["default"])
            m.gamma.copy_(layer.randlora_gamma["default"])
    x = torch.randn(3, 5, 24)
    with pm.disable_adapter():
        base_out = pm(x)
    assert (pm(x) - base_out).abs().max() > 1e-3
    torch.testing.assert_close(ours(x), pm(x), rtol=1e-5, atol=1e-5)


def test_unilora_matches_peft_from_the_seed_alone():
    """Same seed -> the same index assignment and scales; only theta is copied."""
    cfg = peft.UniLoraConfig(r=4, theta_d_length=64, proj_seed=11, target_modules=TARGETS)
    pm, ours, layers, ms = _pair(cfg, "unilora", r=4, theta_d_length=64, proj_seed=11)
    _randomise(pm, "unilora_theta_d")
    with torch.no_grad():
        ms[0].shared.theta.copy_(pm.base_model.unilora_theta_d["default"])
    x = torch.randn(3, 5, 24)
    out = ours(x)
    for layer, m in zip(layers, ms, strict=True):
        assert torch.equal(m.idx_A, layer.unilora_indices_A["default"])
        assert torch.equal(m.idx_B, layer.unilora_indices_B["default"])
        torch.testing.assert_close(m.scale_B, layer.unilora_scales_B["default"])
    with pm.disable_adapter():
        base_out = pm(x)
    assert (pm(x) - base_out).abs().max() > 1e-3
    torch.testing.assert_close(out, pm(x), rtol=1e-5, atol=1e-6)
