"""AltLoRA (``core/methods/altlora.py``) pinned where mutation testing (``bash .ci/mutate
core/methods/altlora.py``) found it untested: its optimizer's defaults for the tensors it
does not own (a head steps exactly as ``torch.optim.AdamW`` with eps 1e-8, no weight decay)."""

import torch
from torch import nn

from lorakit.core import inject, make_config, protocol


def test_a_head_steps_as_torch_adamw_with_the_default_options():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))
    inject(model, make_config("altlora", r=2, targets=("0",)))
    head = model[2]
    head.requires_grad_(True)  # a trainable head next to the adapter
    ref = nn.Linear(5, 3)
    ref.load_state_dict(head.state_dict())
    lr = 0.01
    opt = protocol.method_optimizer(model, lr=lr)
    torch_opt = torch.optim.AdamW(ref.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8,
                                  weight_decay=0.0)
    x, y = torch.randn(8, 6), torch.randn(8, 3)
    for _ in range(3):
        opt.zero_grad()
        (model(x) - y).pow(2).mean().backward()
        ref.weight.grad, ref.bias.grad = head.weight.grad.clone(), head.bias.grad.clone()
        opt.step()
        torch_opt.step()
        torch.testing.assert_close(head.weight, ref.weight, atol=1e-7, rtol=1e-6)
        torch.testing.assert_close(head.bias, ref.bias, atol=1e-7, rtol=1e-6)
