"""The adapter contract every method must keep on every host it supports.

Used by the test suite (one parametrized test) and by ``lorakit selfcheck``. Each check
raises ``AssertionError`` with what went wrong.
"""

from __future__ import annotations

import copy
import tempfile

import torch
from torch import nn

from .adapters import adapter_methods as methods
from .api import (
    disable,
    enable,
    merge,
    remove_adapter,
    trainable_parameters,
    unmerge,
)
from .inject import inject
from .io import load_adapter, save_adapter
from .protocol import method_optimizer
from .quant import quantize
from .registry import METHODS, make_config, method_spec
from .zoo import ZOO, ZOO_HOST, build


def supported_pairs() -> list[tuple[str, str]]:
    return [(m, z) for m, spec in METHODS.items() for z in ZOO if ZOO_HOST[z] in spec.layer.hosts]


# the contract over a quantized base (core/quant): zoo models whose Linears are quantized;
# methods that train the base weights themselves (GORP) cannot sit on frozen codes
QUANT_ZOO = ("linear", "fused_qkv")
TINY_QUANT = {"bits": 4, "scheme": "nf", "group_size": 16}


def supported_quant_pairs() -> list[tuple[str, str]]:
    return [(m, z) for m, z in supported_pairs()
            if z in QUANT_ZOO and not method_spec(m).layer.trains_base_weights]


def build_model(zoo_name: str, quant: dict | None = None):
    """``zoo.build``, with every Linear quantized (``quantize(**quant)``) when ``quant``."""
    model, x, targets, slices = build(zoo_name)
    if quant:
        quantize(model, **quant)
    return model, x, targets, slices


def tiny_config(method: str, targets, slices, **extra):
    """A config valid on the zoo's tiny layers: r=2, alpha=4 and the method's own
    ``test_hyper`` (Block-LoRA needs ``d_in % n_blocks == 0``, ...)."""
    hyper = {
        "r": 2,
        "alpha": 4.0,
        "targets": targets,
        "slices": slices,
        **method_spec(method).test_hyper,
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
        m.test_perturb()  # method state the test should exercise (LARGO: a binding radius)


def _close(a, b, tol, what):
    err = (a - b).abs().max().item()
    assert err <= tol, f"{what}: max difference {err:.3g} > {tol:g}"


def check_contract(
    method: str, zoo_name: str, workdir: str | None = None, quant: dict | None = None
) -> None:
    """Steps 1-6 check the adapter under a plain optimizer over its own tensors. A method
    that also trains base weights with its own optimizer (GORP: ``trains_base_weights``)
    cannot keep "disable restores W0" or "the adapter file alone reproduces the model"
    once that optimizer has stepped; step 7 checks what it keeps instead."""
    layer = method_spec(method).layer
    model, x, targets, slices = build_model(zoo_name, quant)
    base_out = model(x)
    inject(model, tiny_config(method, targets, slices))

    # 1. a fresh adapter is the base model (where the method allows it: Uni-LoRA's one
    #    shared vector cannot start at zero, so only its output's closeness is checked)
    if layer.starts_at_base:
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
        fresh, _, _, _ = build_model(zoo_name, quant)
        load_adapter(fresh, d, trainable=True)
        assert torch.equal(fresh(x), model(x)), "save/load does not reproduce the output exactly"
        frozen, _, _, _ = build_model(zoo_name, quant)
        load_adapter(frozen, d)
        loaded = methods(frozen)
        assert all(not m.training for m in loaded), "loaded adapter is in training mode"
        assert not any(p.requires_grad for m in loaded for p in m.parameters())
        _close(frozen(x), model(x), 1e-5, "inference-mode load changes the output")

    # 6. merged equals unmerged; unmerge restores W0
    if layer.mergeable:
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
    if layer.trains_base_weights:
        _check_trained_base(model, x, layer)


def _check_trained_base(model: nn.Module, x, layer) -> None:
    opt = method_optimizer(model, lr=1e-2)
    full = {id(w) for _, w in layer.full_weights(model)}
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
