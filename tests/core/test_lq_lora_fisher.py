"""LQ-LoRA's Fisher-weighted decomposition (``fisher: true``): the weighted objective
``||sqrt(F) .* (W - Q - L1 L2)||_F`` falls over the iterations, weighting beats the plain
decomposition on that objective, and the estimate reaches the method through ``quantize``.
Every error here is recomputed from the returned tensors, not read from the method."""

import pytest
import torch
from torch import nn

from lorakit.core import make_config, quantize
from lorakit.core.methods.lq_lora import lq_decompose
from lorakit.core.quant import QuantSpec, fisher_diagonal

SPEC = QuantSpec(bits=2, scheme="nf", group_size=32)


def problem(seed=0, d_out=48, d_in=96):
    """A pretrained-like weight and a Fisher diagonal spanning ~4 decades, mostly row and
    column structured (as gradients squared are) with element noise on top."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(d_out, 4, generator=g) @ torch.randn(4, d_in, generator=g) * 0.1
    w += torch.randn(d_out, d_in, generator=g) * 0.02
    w[:, :3] *= 8
    rows = torch.logspace(-2, 1, d_out)[torch.randperm(d_out, generator=g)]
    cols = torch.logspace(-1, 1, d_in)[torch.randperm(d_in, generator=g)]
    fisher = rows[:, None] * cols[None, :] * torch.rand(d_out, d_in, generator=g).add(0.5)
    return w, fisher


def weighted(w, d, fisher) -> float:
    """The objective, recomputed from the decomposition's tensors."""
    return float(torch.linalg.norm(fisher.sqrt() * (w - d.q.dequantize() - d.b @ d.a)))


def test_weighted_objective_falls_over_iterations():
    w, fisher = problem()
    curve = [weighted(w, lq_decompose(w, 4, SPEC, k, fisher), fisher) for k in range(1, 7)]
    assert all(b <= a + 1e-9 for a, b in zip(curve, curve[1:], strict=False)), curve
    assert curve[-1] < 0.9 * curve[0], curve  # it is not stuck at the first pair
    d = lq_decompose(w, 4, SPEC, 30, fisher)
    assert weighted(w, d, fisher) == pytest.approx(d.error, rel=1e-4) == min(d.errors)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_weighting_lowers_the_weighted_error(seed):
    w, fisher = problem(seed)
    plain = lq_decompose(w, 4, SPEC, 20)
    fw = lq_decompose(w, 4, SPEC, 20, fisher)
    assert weighted(w, fw, fisher) < 0.95 * weighted(w, plain, fisher)
    # and the price: the unweighted error is the plain decomposition's to win
    assert float(torch.linalg.norm(w - plain.q.dequantize() - plain.b @ plain.a)) <= float(
        torch.linalg.norm(w - fw.q.dequantize() - fw.b @ fw.a)) + 1e-6


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 64), nn.GELU(), nn.Linear(64, 8)).eval()


def test_fisher_estimate_through_quantize():
    model = _mlp()
    x, y = torch.randn(16, 64), torch.randint(0, 8, (16,))

    def loss(m, b):
        return nn.functional.cross_entropy(m(b[0]), b[1])

    fisher = fisher_diagonal(model, [(x[i:i + 1], y[i:i + 1]) for i in range(16)], loss)
    grads = [torch.autograd.grad(loss(model, (x[i:i + 1], y[i:i + 1])), model[0].weight)[0]
             for i in range(16)]
    assert torch.allclose(fisher["0"], torch.stack(grads).pow(2).mean(0), rtol=1e-5, atol=1e-12)
    assert not model[0].weight.grad  # nothing written into .grad
    w = model[0].weight.detach().clone()
    cfg = make_config("lq_lora", r=4, targets=("0",), fisher=True, lq_iters=10)
    with pytest.raises(ValueError, match="fisher: true needs a Fisher estimate"):
        quantize(_mlp(), bits=2, group_size=32, targets=("0",), adapter=cfg)
    with pytest.raises(ValueError, match="fisher= is read by lq_lora with fisher: true"):
        quantize(_mlp(), bits=2, group_size=32, targets=("0",), fisher=fisher,
                 adapter=make_config("lq_lora", r=4, targets=("0",)))
    quantize(model, bits=2, group_size=32, targets=("0",), adapter=cfg, fisher=fisher)
    host = model[0]
    w_hat = host.base.weight + host.adapters["default"]["weight"].delta_weight().detach()
    expect = lq_decompose(w, 4, QuantSpec(2, "nf", 32), 10, fisher["0"])
    got = float(torch.linalg.norm(fisher["0"].sqrt() * (w - w_hat)))
    assert got == pytest.approx(expect.error, rel=1e-4)
