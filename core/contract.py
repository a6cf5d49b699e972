"""The adapter contract every method must keep on every host it supports.

Used by the test suite (one parametrized test) and by ``lorakit selfcheck``. Each check
raises ``AssertionError`` with what went wrong.
"""

from __future__ import annotations

import copy
import tempfile

import torch
from torch import nn

from .api import (
    disable,
    enable,
    merge,
    methods,
    remove_adapter,
    trainable_parameters,
    unmerge,
)
from .inject import inject, make_config
from .io import load_adapter, save_adapter
from .methods import METHODS
from .protocol import method_optimizer
from .zoo import ZOO, ZOO_HOST, build

# method-specific settings that make tiny layers valid (Block-LoRA needs d_in % n == 0)
TINY_HYPER = {
    "block_lora": {"n_blocks": 4},
    "comp_lora": {"k": 2},
    "fora": {"grid": (2, 3)},
    "vera": {"r": 4},
    "randlora": {"alpha": 0.2},
    "nola": {"k": 4, "alpha": 0.2},
    "loca": {"n_coef": 24, "alpha": 0.5},
    "unilora": {"theta_d_length": 32},
    "sora": {"alpha": 1.0},  # a third factor (the gate): a smaller scale keeps SGD stable
    "lora_squeeze": {"target_r": 1},
    "diffora": {"search_steps": 1},
}



def supported_pairs() -> list[tuple[str, str]]:
    return [(m, z) for m in METHODS for z in ZOO if ZOO_HOST[z] in METHODS[m][1].hosts]


def tiny_config(method: str, targets, slices, **extra):
    hyper = {
        "r": 2,
        "alpha": 4.0,
        "targets": targets,
        "slices": slices,
        **TINY_HYPER.get(method, {}),
        **extra,
    }
    return make_config(method, **hyper)


@torch.no_grad()
def perturb(model: nn.Module, seed: int = 1) -> None:
    """Give every adapter tensor non-trivial values, so deltas are non-zero."""
    g = torch.Generator().manual_seed(seed)
    for p in trainable_parameters(model):
        p.copy_(torch.randn(p.shape, generator=g) * 0.3 + (1.0 if p.dim() == 1 else 0.0))
    for m in methods(model):
        if m.name == "largo":  # a radius that binds, so the projection is exercised
            m.gamma.fill_(0.5 * float(m.update_norm()))


def _close(a, b, tol, what):
    err = (a - b).abs().max().item()
    assert err <= tol, f"{what}: max difference {err:.3g} > {tol:g}"


def check_contract(method: str, zoo_name: str, workdir: str | None = None) -> None:
    """Steps 1-6 check the adapter under a plain optimizer over its own tensors. A method
    that also trains base weights with its own optimizer (GORP: ``trains_base_weights``)
    cannot keep "disable restores W0" or "the adapter file alone reproduces the model"
    once that optimizer has stepped; step 7 checks what it keeps instead."""
    model, x, targets, slices = build(zoo_name)
    base_out = model(x)
    inject(model, tiny_config(method, targets, slices))

    # 1. a fresh adapter is the base model (where the method allows it: Uni-LoRA's one
    #    shared vector cannot start at zero, so only its output's closeness is checked)
    if getattr(METHODS[method][1], "starts_at_base", True):
        _close(model(x), base_out, 1e-6, "fresh adapter changes the output")
    else:
        _close(model(x), base_out, 1e-2, "fresh adapter is far from the base model")

    # 2. only adapter tensors train
    adapter_ids = {id(p) for m in methods(model) for p in m.parameters()}
    trainable = trainable_parameters(model)
    assert trainable and all(id(p) in adapter_ids for p in trainable), "a base tensor is trainable"
    assert all(p.requires_grad for m in methods(model) for p in m.parameters())

    # 3. a training step changes the output
    opt = torch.optim.SGD(trainable, lr=0.1)
    perturb(model)
    before = model(x).detach()
    model.train()
    model(x).pow(2).mean().backward()
    opt.step()
    model.eval()
    assert (model(x) - before).abs().max() > 1e-6, "a training step did not change the output"

    adapted = model(x).detach()
    assert (adapted - base_out).abs().max() > 1e-5, "adapter has no effect after perturbation"

    # 4. disable restores the base; enable restores the adapter
    disable(model)
    _close(model(x), base_out, 1e-6, "disable does not restore the base")
    enable(model)
    _close(model(x), adapted, 1e-6, "enable does not restore the adapter")

    # 5. save -> load into a fresh base reproduces the output exactly; by default the
    #    loaded adapter is for inference (eval mode, frozen; the output then only differs
    #    where PyTorch picks another attention kernel for tensors that need no gradient)
    with tempfile.TemporaryDirectory(dir=workdir) as d:
        save_adapter(model, d)
        fresh, _, _, _ = build(zoo_name)
        load_adapter(fresh, d, trainable=True)
        assert torch.equal(fresh(x), model(x)), "save/load does not reproduce the output exactly"
        frozen, _, _, _ = build(zoo_name)
        load_adapter(frozen, d)
        loaded = methods(frozen)
        assert all(not m.training for m in loaded), "loaded adapter is in training mode"
        assert not any(p.requires_grad for m in loaded for p in m.parameters())
        _close(frozen(x), model(x), 1e-5, "inference-mode load changes the output")

    # 6. merged equals unmerged; unmerge restores W0
    if METHODS[method][1].mergeable:
        weights = {
            n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad
        }
        merge(model)
        _close(model(x), adapted, 1e-4, "merged output differs from unmerged")
        unmerge(model)
        for n, p in model.named_parameters():
            if n in weights:
                _close(p, weights[n], 1e-5, f"unmerge does not restore {n}")
    else:
        try:
            merge(model)
        except ValueError:
            pass
        else:
            raise AssertionError(f"merge of non-mergeable {method} did not raise")

    # 7. methods training base weights (GORP): their optimizer trains exactly the adapter
    #    plus the named full weights, and disable / unmerge then give the *trained* base
    if getattr(METHODS[method][1], "trains_base_weights", False):
        _check_trained_base(model, x, method)


def _check_trained_base(model: nn.Module, x, method: str) -> None:
    opt = method_optimizer(model, lr=1e-2)
    full = {id(w) for _, w in METHODS[method][1].full_weights(model)}
    adapter_ids = {id(p) for m in methods(model) for p in m.parameters()}
    assert full and {id(p) for p in trainable_parameters(model)} == adapter_ids | full, (
        "the method's optimizer trains other tensors than the adapter and its full weights"
    )
    before = model(x).detach()
    model.train()
    model(x).pow(2).mean().backward()
    opt.step()
    model.eval()
    assert (model(x) - before).abs().max() > 1e-6, "the method's optimizer step changed nothing"
    plain = remove_adapter(copy.deepcopy(model))  # the trained base, without the adapter
    disable(model)
    _close(model(x), plain(x), 1e-6, "disable does not give the trained base")
    enable(model)
