"""Quantization-aware methods: LoftQ / LQ-LoRA / QWHA absorb the quantization error,
LQ-LoRA's decomposition and ILP, QWHA's transform, Bayesian-LoRA's gates and bit operations."""

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from lorakit.core import inject, make_config, methods, model_bytes, quantize, regularization_loss
from lorakit.core.hadamard import hadamard_matrix, hadamard_size, wht
from lorakit.core.methods.bayesian_lora import bit_operations, gated_quantize
from lorakit.core.methods.lq_lora import lq_decompose
from lorakit.core.quant import QuantSpec, fake_quantize
from lorakit.core.quant.ilp import allocate
from lorakit.core.zoo import GridAttention


def weights(d_out, d_in, seed=0):
    """A pretrained-like matrix: a few strong directions, noise, and outlier columns."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(d_out, 4, generator=g) @ torch.randn(4, d_in, generator=g) * 0.1
    w += torch.randn(d_out, d_in, generator=g) * 0.02
    w[:, :3] *= 8
    return w


def mlp(d_in=96, hidden=64, seed=0):
    model = nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.Linear(hidden, d_in)).eval()
    with torch.no_grad():
        model[0].weight.copy_(weights(hidden, d_in, seed))
        model[2].weight.copy_(weights(d_in, hidden, seed + 1))
    return model


@pytest.mark.parametrize("method", ["loftq", "lq_lora", "qwha"])
@pytest.mark.parametrize("bits", [2, 3])
def test_init_absorbs_quantization_error(method, bits):
    x = torch.randn(16, 96)
    fp = mlp()
    ref = fp(x)
    plain = mlp()
    quantize(plain, bits=bits, group_size=32)
    model = mlp()
    cfg = make_config(method, r=4, targets=("0", "2"))
    report = quantize(model, bits=bits, group_size=32, adapter=cfg)
    for layer in report.layers:
        assert layer.rel_error_adapted < 0.9 * layer.rel_error, (layer.name, method)
    assert (model(x) - ref).norm() < 0.9 * (plain(x) - ref).norm()
    # the same trainable budget for all three (QWHA: n_coef = r (d_in + d_out))
    assert report.adapter.trainable == 4 * (96 + 64) * 2


def test_fused_layer_absorbs_only_adapted_slices():
    torch.manual_seed(0)
    model = GridAttention(c=32).eval()
    with torch.no_grad():
        model.qkv.weight.copy_(weights(96, 32))
    w = model.qkv.weight.detach().clone()
    report = quantize(model, bits=3, group_size=16, targets=("qkv",),
                      adapter=make_config("loftq", r=2, targets=("qkv",), slices=("q", "v")))
    w_hat = model.qkv.base.weight
    plain = fake_quantize(w, 3, "nf", 16)
    assert torch.equal(w_hat[32:64], plain[32:64])  # k: not adapted, plain codes
    assert not torch.equal(w_hat[:32], plain[:32])  # q: codes of W - L
    assert report.layers[0].rel_error_adapted < report.layers[0].rel_error


def test_lq_decomposition_lowers_error_each_iteration():
    w = weights(64, 128)
    spec = QuantSpec(bits=2, scheme="nf", group_size=32)
    d = lq_decompose(w, r=4, spec=spec, iters=30)
    kept = d.errors if len(d.errors) < 2 or d.errors[-1] <= d.errors[-2] else d.errors[:-1]
    assert len(kept) >= 3
    assert all(b < a for a, b in zip(kept, kept[1:], strict=False)), d.errors
    # the returned pair is the best one, recomputed from its tensors
    again = torch.linalg.norm(w - d.q.dequantize() - d.b @ d.a)
    assert float(again) == pytest.approx(d.error, rel=1e-5) and d.error == min(d.errors)
    assert d.error < float(torch.linalg.norm(w - spec.fake(w)))


def test_ilp_is_optimal_and_respects_budget():
    rng = np.random.default_rng(0)
    errors = rng.random((5, 3)) * [[9, 3, 1]]
    costs = np.tile([2.0, 3.0, 5.0], (5, 1)) + rng.random((5, 3))
    budget = 17.0
    got = allocate(errors, costs, budget)
    assert got.cost <= budget and len(got.choice) == 5
    best = min(
        (sum(errors[i, c] for i, c in enumerate(ch)), ch)
        for ch in itertools.product(range(3), repeat=5)
        if sum(costs[i, c] for i, c in enumerate(ch)) <= budget
    )
    assert got.error == pytest.approx(best[0]) and tuple(got.choice) == best[1]
    with pytest.raises(ValueError, match="below the smallest possible"):
        allocate(errors, costs, 5.0)


def test_lq_lora_bit_budget_through_quantize():
    model = nn.Sequential(*(nn.Linear(64, 64) for _ in range(4))).eval()
    with torch.no_grad():
        for i, layer in enumerate(model):
            layer.weight.copy_(weights(64, 64, i) * (1 + 3 * i))
    cfg = make_config("lq_lora", r=2, targets=("0", "1", "2", "3"), budget_bits=3.0,
                      candidate_bits=(2, 3, 4), lq_iters=5)
    report = quantize(model, bits=4, group_size=32, adapter=cfg)
    used = 8 * model_bytes(model)["quantized_layers"] / (4 * 64 * 64)
    assert used <= 3.0 and len({q.bits for q in report.layers}) > 1
    assert "ILP" in report.notes[0]


@pytest.mark.parametrize("n", [32, 72, 96, 384, 40])
def test_walsh_hadamard_orthogonal(n):
    h = hadamard_matrix(n)
    assert set(h.unique().tolist()) == {-1.0, 1.0}
    assert torch.allclose(h @ h.T, n * torch.eye(n))
    x = torch.randn(3, n)
    assert torch.allclose(wht(x), x @ h, atol=1e-4)
    assert torch.allclose(wht(wht(x), transpose=True) / n, x, atol=1e-5)  # H^-1 = H^T / n


@pytest.mark.parametrize("d_in", [96, 36])  # 36: no Hadamard matrix, padded to 40
def test_qwha_initial_f_reduces_output_error(d_in):
    assert hadamard_size(36) == 40
    lin = nn.Linear(d_in, 48, bias=False)
    with torch.no_grad():
        lin.weight.copy_(weights(48, d_in))
    x = torch.randn(64, d_in)
    ref = lin(x)
    model = nn.Sequential(lin)
    quantize(model, bits=2, group_size=16, adapter=make_config("qwha", r=2, targets=("0",)))
    host = model[0]
    q_out = host.base(x)
    m = methods(model)[0]
    assert m.coef.numel() == 2 * (d_in + 48) and torch.count_nonzero(m.coef) > 0
    assert (model(x) - ref).norm() < 0.8 * (q_out - ref).norm()
    if d_in == 36:  # padded columns: refined values beat the raw spectrum at the same places
        err = lin.weight.detach() - host.base.weight
        f = wht(torch.nn.functional.pad(err, (0, 4)))
        raw = torch.zeros(48, 40).index_put((m.rows, m.cols), f[m.rows, m.cols])
        raw_dw = (wht(raw, transpose=True) / 40)[:, :36]
        with torch.no_grad():
            assert (err - m.delta_weight()).norm() < 0.999 * (err - raw_dw).norm()


@pytest.mark.parametrize("penalty", [0.0, 1.0])  # the task loss alone, and with the prior
def test_bayesian_lora_gates_move(penalty):
    torch.manual_seed(0)
    model = mlp()
    inject(model, make_config("bayesian_lora", r=4, targets=("0", "2"), bop_penalty=penalty))
    m = methods(model)[0]
    with torch.no_grad():
        for p in methods(model):
            p.B.normal_(0, 0.1)
    before = {k: getattr(m, k).detach().clone() for k in ("rank_logit", "bit_logit_A", "bit_logit_B")}
    opt = torch.optim.SGD([p for mm in methods(model) for p in mm.parameters()], lr=1.0)
    model.train()
    loss = model(torch.randn(8, 96)).pow(2).mean() + regularization_loss(model)
    loss.backward()
    opt.step()
    for k, v in before.items():
        assert (getattr(m, k) - v).abs().max() > 1e-4, k


def test_gated_quantizer_levels():
    a = torch.randn(5, 7)
    open_all = torch.ones(4)
    assert torch.allclose(gated_quantize(a, open_all, (2, 4, 8, 16, 32)), a, atol=1e-6)
    two = gated_quantize(a, torch.zeros(4), (2, 4, 8, 16, 32))
    top = a.abs().max()
    assert set((two / top).round(decimals=5).unique().tolist()) <= {-1.0, 0.0, 1.0}
    four = gated_quantize(a, torch.tensor([1.0, 0, 0, 0]), (2, 4, 8, 16, 32))
    assert (four - a).abs().max() <= top / 7 / 2 + 1e-6  # 4-bit step a / 7, half a step off


def test_bayesian_lora_bit_operations_hand_count():
    model = mlp(d_in=32, hidden=64)
    quantize(model, bits=4, group_size=16)
    inject(model, make_config("bayesian_lora", r=2, targets=("0", "2")))
    fc1 = model[0].adapters["default"]["weight"]
    with torch.no_grad():  # fc1: rank 1, A at 8 bits, B at 2 bits; fc2 stays open
        fc1.rank_logit.copy_(torch.tensor([3.0, -9.0]))
        fc1.bit_logit_A.copy_(torch.tensor([3.0, 3.0, -9.0, 3.0]))
        fc1.bit_logit_B.copy_(torch.tensor([-9.0, 3.0, 3.0, 3.0]))
    ops = bit_operations(model)
    assert ops["layers"]["0"] == {"rank": 1, "bits_A": 8, "bits_B": 2,
                                  "adapter_bops": 12288, "base_bops": 262144}
    # fc2: (2*64*32 + 32*2*32) * 32 adapter, 32*64*4*32 base (4-bit codes, float activations)
    assert ops["layers"]["2"]["adapter_bops"] == 196608
    assert ops["total_adapter"] == 12288 + 196608 and ops["total_base"] == 2 * 262144


@pytest.mark.parametrize("shape", [(96, 24), (24, 96), (40, 40)])
def test_svd_factors_are_the_best_rank_r_approximation(shape):
    """The Gram-matrix route gives SVD_r (Eckart-Young): the same ``B A`` as a full SVD."""
    from lorakit.core.methods.loftq import svd_factors

    torch.manual_seed(0)
    m = torch.randn(*shape)
    m[:, :3] *= 10  # a spread spectrum
    a, b = svd_factors(m, 5)
    u, s, vh = torch.linalg.svd(m.double(), full_matrices=False)
    best = (u[:, :5] * s[:5]) @ vh[:5]
    assert torch.allclose((b @ a).double(), best, atol=1e-4)
    assert torch.allclose(a @ a.T, b.T @ b, atol=1e-3)  # singular values split evenly
    zero_a, zero_b = svd_factors(torch.zeros(8, 4), 2)
    assert torch.isfinite(zero_a).all() and not (zero_b @ zero_a).any()
