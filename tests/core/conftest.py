"""Fixtures shared by the method tests of ``tests/core`` (mostly the ``test_mutants_*`` files,
which pin what mutation testing found untested): one adapted Linear layer from a fixed seed,
and a stand-in second rank of a distributed run. Tests import nothing from conftest."""

from __future__ import annotations

from typing import NamedTuple

import pytest
import torch
from torch import nn

from lorakit.core import inject, make_config, methods


class OneLayer(NamedTuple):
    model: nn.Sequential  # nn.Sequential(nn.Linear(d_in, d_out)), adapted
    m: nn.Module  # its one method module (slot "0")
    w0: torch.Tensor  # the Linear's weight before injection (a copy)
    b0: torch.Tensor  # its bias


def _one_layer(method: str, d_in: int = 6, d_out: int = 5, seed: int = 0, **hyper) -> OneLayer:
    """``method`` injected into one ``nn.Linear(d_in, d_out)`` made after
    ``torch.manual_seed(seed)`` (the weights, then the adapter's init, come from that seed)."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(d_in, d_out))
    w0, b0 = model[0].weight.detach().clone(), model[0].bias.detach().clone()
    inject(model, make_config(method, **{"targets": ("0",), **hyper}))
    return OneLayer(model, methods(model)[0], w0, b0)


@pytest.fixture
def one_layer():
    """``one_layer(method, d_in=6, d_out=5, seed=0, **hyper) -> (model, m, w0, b0)``."""
    return _one_layer


@pytest.fixture
def second_rank(monkeypatch):
    """Pretend a distributed run of two ranks whose other rank adds 3.0 to every entry of an
    ``all_reduce`` (so a mean over ranks is ``(t + 3) / 2``)."""
    dist = torch.distributed
    monkeypatch.setattr(dist, "is_available", lambda: True)
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(dist, "all_reduce", lambda t: t.add_(3.0))
    return 3.0


def _adamw_steps(model, x, n=3, lr=0.05):
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    for _ in range(n):
        opt.zero_grad()
        (model(x) - 1.0).pow(2).mean().backward()
        opt.step()


@pytest.fixture
def adamw_steps():
    """``adamw_steps(model, x, n=3, lr=0.05)``: n AdamW steps on ``mean((model(x) - 1)^2)``
    over the trainable tensors (the SLTrain tests' few steps from a fixed seed)."""
    return _adamw_steps

