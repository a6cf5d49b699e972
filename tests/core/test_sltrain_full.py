"""SLTrain as a full-weight replacement: ``W = s B A + S`` recomputed by hand, the dense
weight gone, the support fixed and saved, the SVD init's Eckart-Young residual."""

import pytest
import torch
from torch import nn

from lorakit.core import inject, make_config
from lorakit.core.sltrain_full import (
    SLTrainLinear,
    SLTrainWeightsConfig,
    densify,
    init_error,
    replace_weights,
)
from lorakit.core.zoo import build


def _model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(12, 10), nn.GELU(), nn.Linear(10, 6))


def _by_hand(m: SLTrainLinear, r: int, alpha: float) -> torch.Tensor:
    """``(alpha / r) B A + S`` with ``S`` filled entry by entry from the flat indices."""
    d_out, d_in = m.B.shape[0], m.A.shape[1]
    sparse = torch.zeros(d_out, d_in)
    for k, flat in enumerate(m.support.tolist()):
        sparse[flat // d_in, flat % d_in] = m.values[k].item()
    return (alpha / r) * m.B.detach() @ m.A.detach() + sparse


def test_replaced_forward_is_x_times_sba_plus_s_plus_bias_after_training(adamw_steps):
    model = _model()
    r, alpha, density = 3, 6.0, 0.3
    cfg = SLTrainWeightsConfig(r=r, alpha=alpha, density=density, targets=("0", "2"))
    assert replace_weights(model, cfg) == ["0", "2"]
    layer = model[0]
    support0 = layer.support.clone()
    before = {n: p.detach().clone() for n, p in layer.named_parameters()}
    x = torch.randn(20, 12)
    adamw_steps(model, x)
    assert torch.equal(layer.support, support0)  # the support never moves
    for n, p in layer.named_parameters():  # every part trains: A, B, values, bias
        assert not torch.equal(p.detach(), before[n]), n
    w = _by_hand(layer, r, alpha)
    h = x @ w.T + layer.bias.detach()
    torch.testing.assert_close(layer(x), h, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(layer.weight, w, atol=1e-6, rtol=1e-6)


def test_dense_weight_is_dropped_and_the_count_is_r_din_dout_plus_n_plus_bias():
    model = _model()
    dense = sum(p.numel() for p in model.parameters())
    r, density = 2, 0.25
    replace_weights(model, SLTrainWeightsConfig(r=r, density=density, targets=("0",)))
    layer = model[0]
    shapes = {n: tuple(p.shape) for n, p in layer.named_parameters()}
    assert (10, 12) not in shapes.values()  # no d_out x d_in tensor anywhere in the layer
    assert all(tuple(b.shape) != (10, 12) for b in layer.buffers())
    n = int(density * 10 * 12)
    assert layer.values.numel() == layer.support.numel() == n
    count = sum(p.numel() for p in layer.parameters())
    assert count == r * (12 + 10) + n + 10
    assert all(p.requires_grad for p in layer.parameters())
    assert sum(p.numel() for p in model.parameters()) == dense - (10 * 12 + 10) + count


def test_svd_init_is_eckart_young_plus_the_residual_on_the_support():
    model = _model()
    lin = model[0]
    w0 = lin.weight.detach().clone()
    r, alpha = 3, 5.0
    replace_weights(model, SLTrainWeightsConfig(r=r, alpha=alpha, density=0.2, targets=("0",)))
    m = model[0]
    low = (alpha / r) * m.B.detach() @ m.A.detach()
    assert torch.linalg.matrix_rank(low) == r
    sig = torch.linalg.svdvals(w0)
    # the best rank-r approximation leaves exactly the tail singular values (Eckart-Young)
    torch.testing.assert_close((w0 - low).norm() ** 2, (sig[r:] ** 2).sum(), rtol=1e-4, atol=1e-6)
    flat = m.support.long()
    torch.testing.assert_close(m.values.detach(), (w0 - low).reshape(-1)[flat])
    start = m.weight.detach()
    on = torch.zeros(10 * 12, dtype=torch.bool)
    on[flat] = True
    torch.testing.assert_close(start.reshape(-1)[on], w0.reshape(-1)[on])  # exact on S
    assert torch.equal(m.bias.detach(), lin.bias.detach())
    err = init_error(lin, m)
    off = (w0 - low).reshape(-1)[~on]
    torch.testing.assert_close(torch.tensor(err), off.norm() / w0.norm())


def test_density_one_starts_at_the_pretrained_layer():
    model = _model()
    x = torch.randn(5, 12)
    ref = model(x)
    replace_weights(model, SLTrainWeightsConfig(r=2, density=1.0, targets=("0", "2")))
    torch.testing.assert_close(model(x), ref, atol=1e-5, rtol=1e-5)


def test_random_init_is_the_papers_and_ignores_w0():
    a, b = _model(0), _model(1)  # different W0
    for model in (a, b):
        torch.manual_seed(5)
        replace_weights(
            model, SLTrainWeightsConfig(r=2, density=0.5, init="random", targets=("0",))
        )
    m = a[0]
    assert torch.equal(m.B, torch.zeros_like(m.B))
    assert m.values.abs().max() <= 1 / 12**0.5 and m.values.std() > 0.05
    assert m.bias.abs().max() <= 1 / 10**0.5
    for t in ("A", "values", "bias"):  # the same draw whatever W0 was
        assert torch.equal(getattr(a[0], t), getattr(b[0], t))


def test_support_is_in_the_state_dict_and_loading_restores_it(adamw_steps):
    model = _model()
    replace_weights(model, SLTrainWeightsConfig(r=2, density=0.2, seed=0, targets=("0",)))
    x = torch.randn(8, 12)
    adamw_steps(model, x)
    state = model.state_dict()
    assert state["0.support"].dtype == torch.int32
    assert "0.weight" not in state  # the dense weight is not saved either
    fresh = _model(3)
    replace_weights(fresh, SLTrainWeightsConfig(r=2, density=0.2, seed=9, targets=("0",)))
    assert not torch.equal(fresh[0].support, model[0].support)  # another seed, another draw
    fresh.load_state_dict(state)
    assert torch.equal(fresh[0].support, model[0].support)
    torch.testing.assert_close(fresh(x), model(x))


def test_support_is_seeded_per_layer_name():
    def supports(seed):
        model = _model()
        replace_weights(model, SLTrainWeightsConfig(r=2, density=0.3, seed=seed, targets=("0",)))
        return model[0].support

    assert torch.equal(supports(0), supports(0))
    assert not torch.equal(supports(0), supports(1))
    twins = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8))  # same shape, own draws
    replace_weights(twins, SLTrainWeightsConfig(r=2, density=0.3, targets=("0", "1")))
    assert not torch.equal(twins[0].support, twins[1].support)


@pytest.mark.parametrize("recompute", [True, False])
def test_gradients_match_a_dense_parameterisation(recompute):
    model = _model()
    replace_weights(
        model, SLTrainWeightsConfig(r=2, density=0.3, recompute=recompute, targets=("0",))
    )
    m = model[0]
    x = torch.randn(7, 12, requires_grad=True)
    m(x).pow(2).sum().backward()
    # the same function written densely: W = s B A + scatter(values)
    a, b, v = (t.detach().clone().requires_grad_() for t in (m.A, m.B, m.values))
    xr = x.detach().clone().requires_grad_()
    s = torch.zeros(10 * 12).scatter(0, m.support.long(), v).view(10, 12)
    (xr @ (m.s * b @ a + s).T + m.bias.detach()).pow(2).sum().backward()
    for got, ref in ((x, xr), (m.A, a), (m.B, b), (m.values, v)):
        torch.testing.assert_close(got.grad, ref.grad, atol=1e-5, rtol=1e-4)


def test_densify_gives_linear_layers_with_the_same_output(adamw_steps):
    model = _model()
    replace_weights(model, SLTrainWeightsConfig(r=2, density=0.1, targets=("0", "2")))
    x = torch.randn(4, 12)
    adamw_steps(model, x)
    ref = model(x)
    assert densify(model) == ["0", "2"]
    assert type(model[0]) is nn.Linear and type(model[2]) is nn.Linear
    torch.testing.assert_close(model(x), ref, atol=1e-5, rtol=1e-5)


def test_refusals():
    with pytest.raises(ValueError, match="no nn.Linear layer matches"):
        replace_weights(_model(), SLTrainWeightsConfig(r=2, targets=("0", "nothing")))
    with pytest.raises(ValueError, match="rank r=11"):
        replace_weights(_model(), SLTrainWeightsConfig(r=11, targets=("0",)))
    with pytest.raises(ValueError, match="init must be"):
        replace_weights(_model(), SLTrainWeightsConfig(init="zeros", targets=("0",)))
    mha, _, _, _ = build("mha")
    out = next(n for n, m in mha.named_modules() if n.endswith("out_proj"))
    with pytest.raises(ValueError, match="whose forward bypasses it"):
        replace_weights(mha, SLTrainWeightsConfig(r=2, targets=(out,)))
    model = _model()
    inject(model, make_config("lora", r=2, targets=("0",)))
    with pytest.raises(ValueError, match="carries an adapter"):
        replace_weights(model, SLTrainWeightsConfig(r=2, targets=("0.base",)))


def _saved_shapes(model: nn.Module, x: torch.Tensor) -> list[tuple[int, ...]]:
    """Shapes of what autograd keeps for backward, beyond parameters, buffers and ``x``."""
    known = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers(), x]}
    shapes = []

    def pack(t):
        if t.untyped_storage().data_ptr() not in known:
            shapes.append(tuple(t.shape))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model(x).pow(2).mean()
    loss.backward()
    return shapes


def test_a_training_step_keeps_no_dense_weight_for_backward():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(48, 40))
    replace_weights(model, SLTrainWeightsConfig(r=4, density=0.1, targets=("0",)))
    x = torch.randn(16, 48, requires_grad=True)
    shapes = _saved_shapes(model, x)
    assert (16, 4) in shapes  # A x, kept for B's gradient: r floats per token
    assert all(int(torch.tensor(s).prod()) < 40 * 48 for s in shapes), shapes
    dense = nn.Sequential(nn.Linear(48, 40))
    replace_weights(dense, SLTrainWeightsConfig(r=4, density=0.1, recompute=False, targets=("0",)))
    kept = [int(torch.tensor(s).prod()) for s in _saved_shapes(dense, x)]
    assert 40 * 48 in kept  # without recompute autograd keeps S (as S^T)
