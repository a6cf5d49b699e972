"""Invariants of the catalogue methods: VeRA, Uni-LoRA, RandLoRA, NOLA, LoCA, SVFit, LoLDU, LoRA-SB."""

import math
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from lorakit.core import (
    inject,
    list_methods,
    load_adapter,
    make_config,
    methods,
    protocol,
    save_adapter,
    trainable_parameters,
)
from lorakit.core.contract import perturb
from lorakit.core.methods.loca import dct_matrix
from lorakit.core.methods.loldu import ldu
from lorakit.core.table import method_rows
from lorakit.core.zoo import build

CATALOG = ["vera", "unilora", "randlora", "nola", "loca", "svfit", "loldu", "lora_sb"]


def test_all_registered_and_listed():
    assert set(CATALOG) <= set(list_methods())
    rows = {row["method"]: row for row in method_rows()}
    for name in CATALOG:
        assert "per layer" in rows[name]["trainable"] or "whole model" in rows[name]["trainable"]
        assert rows[name]["mergeable"] is True
        assert rows[name]["needs_prepare"] is (name == "lora_sb")


# --- parameter counts equal the formula --------------------------------------------------


def _slots(model):
    return [(m.d_out, m.d_in) for m in methods(model)]


EXPECTED = {
    "vera": lambda slots, h: sum(h["r"] + o for o, _ in slots),
    "unilora": lambda slots, h: h["theta_d_length"],
    "randlora": lambda slots, h: sum(
        math.ceil(min(o, i) / h["r"]) * (h["r"] + min(o, i)) for o, i in slots
    ),
    "nola": lambda slots, h: 2 * h["k"] * len(slots),
    "loca": lambda slots, h: h["n_coef"] * len(slots),
    "svfit": lambda slots, h: h["r"] * len(slots),
    "loldu": lambda slots, h: (h["r"] + 1) * len(slots),
    "lora_sb": lambda slots, h: h["r"] ** 2 * len(slots),
}
HYPER = {
    "vera": {"r": 6},
    "unilora": {"r": 3, "theta_d_length": 50},
    "randlora": {"r": 5},
    "nola": {"r": 3, "k": 7},
    "loca": {"n_coef": 13},
    "svfit": {"r": 5},
    "loldu": {"r": 5},
    "lora_sb": {"r": 3},
}


@pytest.mark.parametrize("method", CATALOG)
@pytest.mark.parametrize("zoo", ["linear", "mha", "conv2d"])
def test_parameter_count_equals_formula(method, zoo):
    model, _, targets, slices = build(zoo)
    report = inject(model, make_config(method, targets=targets, slices=slices, **HYPER[method]))
    want = EXPECTED[method](_slots(model), HYPER[method])
    assert report.trainable == want
    assert int(trainable_parameters(model)) == want


# --- SVFit and LoLDU: frozen factors reconstruct W0 exactly at init ----------------------


def test_svfit_factors_reconstruct_w0_and_start_at_zero():
    model, x, targets, slices = build("linear")
    w0 = model.fc1.weight.detach().clone()  # 64 x 32: full rank is 32
    inject(model, make_config("svfit", r=32, targets=("fc1",)))
    m = methods(model)[0]
    torch.testing.assert_close((m.U_r * m.S_r) @ m.Vh_r, w0, rtol=0, atol=1e-5)
    assert torch.equal(m.delta_weight(), torch.zeros_like(w0))
    with torch.no_grad():
        m.delta_s.fill_(0.5)  # the top singular values move, the singular vectors do not
    s_new = torch.linalg.svdvals(w0 + m.delta_weight())
    torch.testing.assert_close(s_new, torch.linalg.svdvals(w0) + 0.5, rtol=0, atol=1e-4)


@pytest.mark.parametrize("shape", [(64, 32), (16, 72), (24, 24)])
def test_loldu_factors_reconstruct_w0_and_start_at_zero(shape):
    w0 = torch.randn(*shape)
    p, low, d, up = ldu(w0.double())
    torch.testing.assert_close((p @ low * d) @ up, w0.double(), rtol=0, atol=1e-10)
    k = min(shape)
    assert torch.allclose(torch.diagonal(up[:, :k]), torch.ones(k, dtype=up.dtype))
    lin = nn.Linear(shape[1], shape[0])
    with torch.no_grad():
        lin.weight.copy_(w0)
    model = nn.Sequential(lin)
    inject(model, make_config("loldu", r=k, targets=("0",)))
    m = methods(model)[0]
    torch.testing.assert_close((m.PL_r * m.D_r) @ m.U_r, w0, rtol=0, atol=1e-4)
    assert torch.equal(m.delta_weight(), torch.zeros(shape))  # W_res + sigma0 L D U = W0


def test_loldu_trains_only_the_diagonal_and_scale():
    model, _, targets, slices = build("conv2d")
    inject(model, make_config("loldu", r=4, targets=targets))
    names = {n.rsplit(".", 1)[-1] for n, p in model.named_parameters() if p.requires_grad}
    assert names == {"d", "sigma"}


# --- shared random bases: regenerated from the seed, shared per shape, not saved ----------

FRESH = textwrap.dedent(
    """
    import json, sys, torch
    torch.set_num_threads(1)
    from lorakit.core import load_adapter, methods
    from lorakit.core.zoo import build
    model, x, _, _ = build(sys.argv[1])
    load_adapter(model, sys.argv[2])
    bases = {f"{i}.{k}": v for i, m in enumerate(methods(model))
             for k, v in m.bases._buffers.items()}
    torch.save({"bases": bases, "out": model(x)}, sys.argv[3])
    """
)


@pytest.mark.parametrize("method", ["vera", "nola", "randlora"])
def test_bases_identical_after_save_load_in_a_fresh_process(method, tmp_path):
    model, x, targets, slices = build("mha")
    inject(model, make_config(method, r=4, targets=targets, slices=slices, seed=7))
    perturb(model)
    out = model(x).detach()
    save_adapter(model, tmp_path / "a")
    saved = load_file(str(tmp_path / "a" / "adapter.safetensors"))
    assert not any(".bases." in k for k in saved), "random bases were saved"
    subprocess.run(
        [sys.executable, "-c", FRESH, "mha", str(tmp_path / "a"), str(tmp_path / "o.pt")],
        check=True,
        timeout=120,
    )
    fresh = torch.load(tmp_path / "o.pt")
    ours = {
        f"{i}.{k}": v for i, m in enumerate(methods(model)) for k, v in m.bases._buffers.items()
    }
    assert set(fresh["bases"]) == set(ours)
    for k, v in ours.items():
        assert torch.equal(fresh["bases"][k], v), k
    assert torch.equal(fresh["out"], out)


@pytest.mark.parametrize("method", ["vera", "nola", "randlora"])
def test_bases_shared_per_shape_and_saved_only_when_asked(method, tmp_path):
    model, x, targets, slices = build("linear")  # fc1 64x32, fc2 32x64: two shapes
    inject(model, make_config(method, r=4, targets=targets, save_bases=True))
    a, b = methods(model)
    assert a.bases is not b.bases
    model2, _, targets2, slices2 = build("mha")  # q, k, v, o all 32x32: one shape
    inject(model2, make_config(method, r=4, targets=targets2, slices=slices2))
    assert len({id(m.bases) for m in methods(model2)}) == 1
    save_adapter(model, tmp_path / "a")
    saved = load_file(str(tmp_path / "a" / "adapter.safetensors"))
    assert sum(".bases." in k for k in saved) == 2 * 2  # A and B of each of the two shapes
    reloaded, _, _, _ = build("linear")
    load_adapter(reloaded, tmp_path / "a")
    assert torch.equal(reloaded(x), model(x))
    # another seed gives other bases
    model3, _, _, _ = build("linear")
    inject(model3, make_config(method, r=4, targets=targets, seed=1))
    assert not torch.equal(methods(model3)[0].bases.A, a.bases.A)


def test_unilora_one_vector_indices_not_saved(tmp_path):
    model, x, targets, slices = build("conv2d")
    inject(model, make_config("unilora", r=2, targets=targets, theta_d_length=40))
    thetas = {id(m.shared.theta) for m in methods(model)}
    assert len(thetas) == 1 and int(trainable_parameters(model)) == 40
    model(x)
    counts = torch.bincount(
        torch.cat([torch.cat([m.idx_A.flatten(), m.idx_B.flatten()]) for m in methods(model)])
    )
    assert counts.max() - counts.min() <= 1  # balanced assignment
    save_adapter(model, tmp_path / "a")
    assert list(load_file(str(tmp_path / "a" / "adapter.safetensors"))) == [
        "conv1.adapters.weight.shared.theta"
    ]


# --- LoCA ------------------------------------------------------------------------------


@pytest.mark.parametrize("zoo", ["linear", "conv2d"])
def test_loca_update_is_the_inverse_dct_of_its_coefficients(zoo):
    fft = pytest.importorskip("scipy.fft")
    model, _, targets, slices = build(zoo)
    inject(model, make_config("loca", n_coef=20, alpha=0.7, targets=targets))
    perturb(model)
    for m in methods(model):
        want = 0.7 * fft.idctn(m.spectrum().double().numpy(), type=2, norm="ortho")
        torch.testing.assert_close(
            m.delta_weight().double(), torch.from_numpy(want), atol=1e-6, rtol=0
        )
    c = dct_matrix(9)
    torch.testing.assert_close(c @ c.T, torch.eye(9), atol=1e-6, rtol=0)


def test_loca_relocation_moves_a_coefficient_onto_the_target_frequency():
    """Loss 0.5 ||dW - T||^2, T = one unit frequency next to the coefficient: the finite-
    difference estimate moves the coefficient there and the loss drops to 0 (this loss has
    curvature h = s^2 = 1 along every spectral coefficient)."""
    model = nn.Sequential(nn.Linear(12, 10))
    inject(model, make_config("loca", n_coef=1, alpha=1.0, targets=("0",)))
    m = methods(model)[0]
    with torch.no_grad():
        m.loc_u.fill_(4), m.loc_v.fill_(6), m.coef.fill_(2.0)
    spec = torch.zeros(10, 12)
    spec[5, 6] = 2.0
    target = dct_matrix(10).T @ spec @ dct_matrix(12)
    loss = lambda: 0.5 * (m.delta_weight() - target).pow(2).sum()  # noqa: E731
    before = float(loss().detach())
    grad = (m.delta_weight() - target).detach()
    assert m.relocate(grad, curvature=1.0) == 1
    assert (int(m.loc_u), int(m.loc_v)) == (5, 6)
    assert before > 1.0 and float(loss().detach()) < 1e-8


def test_loca_relocation_runs_through_the_step_hooks_and_stops():
    model, x, targets, _ = build("linear")
    inject(
        model, make_config("loca", n_coef=30, relocate_every=2, relocate_until=6, targets=targets)
    )
    perturb(model)
    opt = torch.optim.SGD(trainable_parameters(model), lr=0.01)
    target = torch.randn_like(model(x))
    model.train()
    history = []
    for _ in range(10):
        opt.zero_grad()
        (model(x) - target).pow(2).mean().backward()
        opt.step()
        protocol.after_step(model)
        history.append(torch.stack([m.loc_u.clone() for m in methods(model)[:1]]))
    moved = [not torch.equal(a, b) for a, b in zip(history[:-1], history[1:], strict=True)]
    assert any(moved[:5]) and not any(moved[6:])  # moves at steps 2, 4, 6 only
    for m in methods(model):
        flat = m.loc_u * m.d_in + m.loc_v
        assert flat.unique().numel() == flat.numel()  # locations stay distinct
        assert int(m.steps) == 6


# --- clear errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "hyper", "match"),
    [
        ("loca", {"n_coef": 10_000}, "n_coef=10000 is larger"),
        ("nola", {"k": 0}, "k \\(number of random bases\\)"),
        ("lora_sb", {"grad_transform": "adam"}, "grad_transform"),
        ("svfit", {"r": 40}, "rank r=40 is larger"),
        ("unilora", {"theta_d_length": 0}, "theta_d_length"),
    ],
)
def test_bad_settings_give_one_line_errors(method, hyper, match):
    model, _, targets, _ = build("linear")
    with pytest.raises(ValueError, match=match):
        inject(model, make_config(method, targets=targets, **hyper))


@pytest.mark.parametrize(("method", "hyper"), [("randlora", {"r": 4}), ("loca", {"n_coef": 40})])
@pytest.mark.parametrize("tokens", [3, 600])  # factored path, dense path
def test_factored_and_dense_paths_agree(method, hyper, tokens):
    from lorakit.core.methods.randlora import dense_is_cheaper

    model = nn.Sequential(nn.Linear(16, 24))
    inject(
        model,
        make_config(method, targets=("0",), relocate_every=0, **hyper)
        if method == "loca"
        else make_config(method, targets=("0",), **hyper),
    )
    perturb(model)
    m = methods(model)[0]
    x = torch.randn(tokens, 16)
    k = 40 if method == "loca" else m.r * m.n
    assert dense_is_cheaper(x, -1, k, 24, 16) is (tokens == 600)
    torch.testing.assert_close(m.delta(x), x @ m.delta_weight().T, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("method", CATALOG)
def test_runs_in_bfloat16_after_the_model_is_cast(method):
    model, x, targets, slices = build("mha")
    inject(model, make_config(method, targets=targets, slices=slices, **HYPER[method]))
    model.to(torch.bfloat16)
    if method == "lora_sb":
        batches = [x.to(torch.bfloat16)] * 2
        protocol.prepare(model, batches, lambda mod, b: mod(b).float().pow(2).mean())
    model.train()
    out = model(x.to(torch.bfloat16))
    assert out.dtype == torch.bfloat16
    out.float().pow(2).mean().backward()
    assert all(p.grad is not None for p in trainable_parameters(model))
    protocol.after_step(model)


def test_unilora_saves_indices_when_asked(tmp_path):
    model, x, targets, slices = build("linear")
    inject(
        model, make_config("unilora", r=2, targets=targets, theta_d_length=40, save_indices=True)
    )
    perturb(model)
    out = model(x)
    save_adapter(model, tmp_path / "a")
    keys = set(load_file(str(tmp_path / "a" / "adapter.safetensors")))
    assert {"fc1.adapters.weight.idx_A", "fc2.adapters.weight.scale_B"} <= keys
    fresh, _, _, _ = build("linear")
    load_adapter(fresh, tmp_path / "a")
    assert torch.equal(fresh(x), out)
