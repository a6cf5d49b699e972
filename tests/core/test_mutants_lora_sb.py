"""LoRA-SB (``core/methods/lora_sb.py``) pinned where mutation testing (``bash .ci/mutate
core/methods/lora_sb.py``) found it untested: the defaults (r = alpha = 16, so s = 1), the
``init_lr`` limit, and a distributed ``prepare`` where one layer gets no gradient (the clear
error, not a crash while averaging)."""

import pytest
import torch
from torch import nn

from lorakit.core import inject, make_config, methods, protocol


def test_defaults_and_init_lr_limit():
    cfg = make_config("lora_sb")
    assert (cfg.r, cfg.alpha, cfg.init_lr, cfg.grad_transform) == (16, 16.0, 1e-3, "sign")
    assert cfg.scale() == 1.0
    for bad in (0.0, -0.5, -2.0):
        with pytest.raises(ValueError, match="init_lr must be > 0"):
            make_config("lora_sb", init_lr=bad)


def test_distributed_prepare_names_the_layer_without_a_gradient(second_rank):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.Linear(6, 5))
    inject(model, make_config("lora_sb", r=2, targets=("0", "1")))
    x = torch.randn(4, 6)
    loss_fn = lambda mod, _b: mod[0](x).pow(2).sum()  # noqa: E731  (layer "1" unused)
    with pytest.raises(ValueError, match="got no gradient in prepare"):
        protocol.prepare(model, [None], loss_fn)
    assert all(m.probe is None for m in methods(model))  # half-made state dropped
