"""Each method's own invariants from METHODS.md."""

import pytest
import torch
from torch import nn

from lorakit.core import (
    after_optimizer_step,
    inject,
    make_config,
    merge,
    methods,
    named_methods,
    protocol,
    regularization_loss,
    trainable_parameters,
    unmerge,
)
from lorakit.core.contract import perturb
from lorakit.core.methods.comp_lora import protected_rank
from lorakit.core.methods.fora import band_index
from lorakit.core.zoo import GridAttention, TinyCNN, TokenMLP


def two_layers(d_in=32, d_out=48):
    return nn.Sequential(
        nn.Linear(d_in, d_out), nn.Tanh(), nn.Linear(d_out, d_in), nn.Tanh(), nn.Linear(d_in, d_out)
    )


# ---------------------------------------------------------------- Block-LoRA


def test_block_lora_parameter_count_and_dense_form():
    model = nn.Sequential(nn.Linear(64, 48))
    report = inject(model, make_config("block_lora", r=4, n_blocks=8, targets=("0",)))
    assert report.trainable == 4 * (48 + 64 // 8)
    perturb(model)
    m = methods(model)[0]
    x = torch.randn(5, 64)
    dense = m.delta_weight()
    assert dense.shape == (48, 64)
    torch.testing.assert_close(m.delta(x), x @ dense.T, rtol=1e-5, atol=1e-5)
    # the dense update repeats one A_s block: [A_s A_s ... A_s]
    a = m.dense_A()
    for i in range(8):
        torch.testing.assert_close(a[:, i * 8 : (i + 1) * 8], m.A_s)


def test_block_lora_conv_dense_form():
    model = TinyCNN()
    inject(model, make_config("block_lora", r=2, n_blocks=4, targets=("conv1",)))
    perturb(model)
    m = methods(model)[0]
    x = torch.randn(2, 8, 5, 5)
    w = m.delta_weight().reshape(16, 8, 3, 3)
    torch.testing.assert_close(
        m.delta(x), torch.nn.functional.conv2d(x, w, padding=1), rtol=1e-4, atol=1e-5
    )


# ---------------------------------------------------------------- Comp-LoRA


@pytest.mark.parametrize("side", ["output", "input", "both"])
def test_comp_lora_never_moves_principal_directions(side):
    model = two_layers()
    inject(model, make_config("comp_lora", r=4, k=5, side=side, targets=("0", "2")))
    perturb(model)
    for m in methods(model):
        u, s, vh = torch.linalg.svd(m_weight(model, m).double(), full_matrices=False)
        dw = m.delta_weight().double()
        assert dw.abs().max() > 1e-3
        if side in ("output", "both"):
            assert (u[:, :5].T @ dw).abs().max() < 3e-5  # U_k^T dW = 0 (float32 SVD vs a float64 one; unprojected: ~1e-1)
        if side in ("input", "both"):
            assert (dw @ vh[:5].T).abs().max() < 3e-5  # dW V_k = 0
        x = torch.randn(3, m.d_in)
        torch.testing.assert_close(m.delta(x), x @ dw.float().T, rtol=1e-4, atol=1e-5)


def m_weight(model, m):
    for name, _, method in named_methods(model):
        if method is m:
            return model.get_submodule(name).base.weight.detach()
    raise AssertionError


def test_comp_lora_projects_b_once_not_every_token():
    """Comp-LoRA's extra FLOPs over LoRA do not grow with the number of tokens."""
    from torch.utils.flop_counter import FlopCounterMode

    def flops(method, tokens):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(64, 96))
        hyper = {"k": 40} if method == "comp_lora" else {}
        inject(model, make_config(method, r=4, targets=("0",), **hyper))
        with FlopCounterMode(display=False) as counter:
            model(torch.randn(tokens, 64))
        return counter.get_total_flops()

    extra = [flops("comp_lora", n) - flops("lora", n) for n in (8, 800)]
    assert extra[0] == extra[1] > 0  # O(d_out k r) once per call


def test_comp_lora_energy_picks_smallest_k():
    s = torch.tensor([3.0, 2.0, 1.0, 0.5])
    total = (s**2).sum()
    assert protected_rank(s, None, float(9 / total) - 1e-6) == 1
    assert protected_rank(s, None, float(13 / total) - 1e-6) == 2
    assert protected_rank(s, None, float(13 / total) + 1e-3) == 3
    assert protected_rank(s, 2, 0.9) == 2


def test_comp_lora_adds_no_trainable_parameters():
    a, b = two_layers(), two_layers()
    ra = inject(a, make_config("lora", r=4, targets=("0", "2")))
    rb = inject(b, make_config("comp_lora", r=4, targets=("0", "2")))
    assert ra.trainable == rb.trainable


# ---------------------------------------------------------------- FoRA


def test_fora_equals_lora_when_mask_is_zero():
    torch.manual_seed(0)
    base = GridAttention()
    fora_model, lora_model = GridAttention(), GridAttention()
    fora_model.load_state_dict(base.state_dict())
    lora_model.load_state_dict(base.state_dict())
    inject(fora_model, make_config("fora", r=4, targets=("qkv",)))
    inject(lora_model, make_config("lora", r=4, targets=("qkv",)))
    perturb(fora_model)
    with torch.no_grad():
        for mf, ml in zip(methods(fora_model), methods(lora_model), strict=True):
            mf.M.zero_()
            ml.A.copy_(mf.A)
            ml.B.copy_(mf.B)
    x = torch.randn(2, 4, 4, 32)
    torch.testing.assert_close(fora_model(x), lora_model(x))
    with torch.no_grad():
        for mf in methods(fora_model):
            mf.M.fill_(0.5)
    assert (fora_model(x) - lora_model(x)).abs().max() > 1e-4


def test_fora_needs_a_grid():
    model = TokenMLP()
    inject(model, make_config("fora", r=2, targets=("fc1",)))
    with pytest.raises(ValueError, match="needs a spatial grid"):
        model(torch.randn(2, 6, 32))
    model2 = TokenMLP()
    inject(model2, make_config("fora", r=2, grid=(2, 2), targets=("fc1",)))
    with pytest.raises(ValueError, match="grid"):
        model2(torch.randn(2, 6, 32))  # 6 tokens do not fill a 2x2 grid


def test_fora_bands_are_radial():
    band = band_index(8, 8, 8)
    assert band.shape == (8, 5)
    assert band[0, 0] == 0  # DC
    assert band[4, 4] == 7  # (1/2, 1/2): the corner, the highest band
    assert band[1, 0] == band[0, 1] == band[-1, 0]  # same radius, same band


def reference_band_mask(h: int, w: int, n_bands: int) -> torch.Tensor:
    """METHODS.md's band of every rfft2 frequency, computed entry by entry."""
    band = torch.zeros(h, w // 2 + 1, dtype=torch.long)
    for i in range(h):
        for j in range(w // 2 + 1):
            fy = (i if i < (h + 1) // 2 else i - h) / h  # cycles per sample in [-1/2, 1/2)
            fx = j / w
            rho = (fy**2 + fx**2) ** 0.5 / 0.5**0.5
            band[i, j] = min(int(rho * n_bands), n_bands - 1)
    return band


def test_fora_mask_scales_one_band():
    """FoRA itself (through the host) with M one-hot on band 1 equals a hand-built filter."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5))
    inject(model, make_config("fora", r=2, n_bands=4, alpha=2.0, targets=("0",)))
    perturb(model)
    m = methods(model)[0]
    with torch.no_grad():
        m.M.zero_()
        m.M[:, 1] = 1.0
    x = torch.randn(2, 8, 8, 6)
    z = x @ m.A.T  # (2, 8, 8, r)
    keep = (reference_band_mask(8, 8, 4) == 1).float()
    spec = torch.fft.rfft2(z.permute(0, 3, 1, 2))
    zf = torch.fft.irfft2(spec * keep, s=(8, 8)).permute(0, 2, 3, 1)
    expected = model[0].base(x) + m.s * (z + zf) @ m.B.T
    torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        m.M[:, 1] = 0.0
    assert (model(x) - expected).abs().max() > 1e-3  # the band really contributes


# ---------------------------------------------------------------- S2-LoRA


def test_s2_lora_shares_one_pair_per_shape_group():
    model = two_layers()  # layers 0 and 4 are 48x32, layer 2 is 32x48
    report = inject(model, make_config("s2_lora", r=4, targets=("0", "2", "4")))
    m0, m2, m4 = methods(model)
    assert m0.shared is m4.shared and m0.shared.A is m4.shared.A
    assert m0.shared is not m2.shared
    assert m0.lam is not m4.lam
    r = 4
    assert report.trainable == r * (48 + 32) + r * (32 + 48) + 3 * r


def test_s2_lora_group_patterns_split_groups():
    model = two_layers()
    inject(model, make_config("s2_lora", r=2, targets=("0", "4"), group_patterns=("^4$",)))
    m0, m4 = methods(model)
    assert m0.shared is not m4.shared


def test_s2_lora_l1_and_proximal_step():
    model = two_layers()
    # no optimizer reports an lr: the threshold is prox_lr * prox_threshold = 0.1
    cfg = make_config("s2_lora", r=4, beta=0.01, prox_threshold=0.2, prox_lr=0.5, targets=("0", "2"))
    inject(model, cfg)
    ms = methods(model)
    with torch.no_grad():
        ms[0].lam.copy_(torch.tensor([0.05, -0.08, 0.5, -2.0]))
    expected = 0.01 * sum(float(m.lam.detach().abs().sum()) for m in ms)
    assert abs(float(regularization_loss(model)) - expected) < 1e-6
    after_optimizer_step(model)
    torch.testing.assert_close(ms[0].lam.detach(), torch.tensor([0.0, 0.0, 0.4, -1.9]))
    assert ms[0].active_rank() == 2


def test_s2_lora_proximal_step_scales_with_the_coefficients_lr():
    """SoRA's proximal step: threshold = lr * xi, the lr of the coefficients' own group
    (lam_lr_scale * lr, no weight decay); an absolute threshold would zero them all."""
    model = two_layers()
    inject(model, make_config("s2_lora", r=4, prox_threshold=0.5, lam_lr_scale=10.0, targets=("0",)))
    m = methods(model)[0]
    opt = torch.optim.AdamW(protocol.param_groups(model, lr=0.01, weight_decay=0.1))
    group = next(g for g in opt.param_groups if any(p is m.lam for p in g["params"]))
    assert group["lr"] == pytest.approx(0.1) and group["weight_decay"] == 0.0
    assert len(opt.param_groups) == 2  # the shared pair keeps lr 0.01
    with torch.no_grad():
        m.lam.copy_(torch.tensor([0.02, -0.5, 0.051, 1.0]))
    protocol.after_step(model, opt)  # no optimizer step taken: only the proximal step acts
    torch.testing.assert_close(m.lam.detach(), torch.tensor([0.0, -0.45, 0.001, 0.95]))


def test_s2_lora_penalty_reaches_the_coefficients():
    model = two_layers()
    inject(model, make_config("s2_lora", r=4, beta=1.0, targets=("0",)))
    regularization_loss(model).backward()
    lam = methods(model)[0].lam
    torch.testing.assert_close(lam.grad, torch.ones(4))


# ---------------------------------------------------------------- LARGO


def test_largo_svd_init_is_function_preserving_and_minor():
    model = two_layers()
    x = torch.randn(4, 32)
    before = model(x)
    inject(model, make_config("largo", r=3, targets=("0", "2")))
    assert torch.equal(model(x), before)
    m = methods(model)[0]
    w0 = model[0].base.weight.detach()
    s = torch.linalg.svdvals(w0)
    # B0 A0 is the rank-3 minor part of W0: its singular values are W0's smallest three
    torch.testing.assert_close(torch.linalg.svdvals(m.B0 @ m.A0)[:3], s[-3:], rtol=1e-4, atol=1e-5)
    assert float(m.gamma) == pytest.approx(1e-3 * float(w0.norm()), rel=1e-5)


def test_largo_low_rank_norm_matches_dense():
    model = two_layers()
    inject(model, make_config("largo", r=3, targets=("0",)))
    perturb(model)
    m = methods(model)[0]
    dense = m.s * (m.B @ m.A - m.B0 @ m.A0)
    assert float(m.update_norm()) == pytest.approx(float(dense.norm()), rel=1e-4)


def merged_update_norm(model, name) -> float:
    """``||W_merged - W0||_F`` read from the merged weight itself (not delta_weight)."""
    host = model.get_submodule(name)
    w0 = host.base.weight.detach().double().clone()
    merge(model)
    norm = float((host.base.weight.detach().double() - w0).norm())
    unmerge(model)
    return norm


def test_largo_radius_holds_every_step_and_is_learned():
    torch.manual_seed(0)
    model = two_layers()
    inject(
        model,
        make_config("largo", r=4, alpha=4.0, gamma_rel=1e-2, mu=1e-3, targets=("0", "2", "4")),
    )
    opt = torch.optim.Adam(trainable_parameters(model), lr=0.05)
    x, y = torch.randn(64, 32), torch.randn(64, 48)
    ms = methods(model)
    gammas0 = [float(m.gamma) for m in ms]
    for _ in range(25):
        loss = (model(x) - y).pow(2).mean() + regularization_loss(model)
        opt.zero_grad()
        loss.backward()
        opt.step()
        after_optimizer_step(model)
        for name, m in zip(("0", "2", "4"), ms, strict=True):
            assert merged_update_norm(model, name) <= float(m.gamma) * (1 + 1e-4)
    assert [float(m.gamma) for m in ms] != gammas0  # radii moved while the constraint was active
    assert all(float(m.gamma) >= 0.1 * g0 * (1 - 1e-6) for m, g0 in zip(ms, gammas0, strict=True))


def test_largo_principal_bound_on_a_768_layer():
    """The cancellation-free norm keeps ||W_eff - W0||_F <= gamma when B stays near B0.

    A pretrained-like spectrum (a few dominant directions): B0 A0 is large next to gamma,
    where the form [B, -B0][A; A0] exceeded gamma by 1.6 % in float32."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(768, 768))
    with torch.no_grad():
        u, _ = torch.linalg.qr(torch.randn(768, 768))
        v, _ = torch.linalg.qr(torch.randn(768, 768))
        spectrum = 10 * 0.7 ** torch.arange(768.0) + 0.01
        model[0].weight.copy_((u * spectrum) @ v.T)
    inject(model, make_config("largo", r=8, component="principal", mu=0.0, targets=("0",)))
    m = methods(model)[0]
    opt = torch.optim.Adam(trainable_parameters(model), lr=1e-4)
    x = torch.randn(32, 768)
    worst = 0.0
    for _ in range(6):
        opt.zero_grad()
        model(x).pow(2).mean().backward()
        opt.step()
        after_optimizer_step(model)
        worst = max(worst, merged_update_norm(model, "0") / float(m.gamma))
    assert 0.9 < worst <= 1 + 1e-4  # the constraint binds, and holds


def test_largo_gamma_min_defaults_to_a_tenth_of_gamma_init():
    model = two_layers()
    inject(model, make_config("largo", r=2, mu=10.0, targets=("0",)))
    m = methods(model)[0]
    g0 = float(m.gamma)
    assert m.gamma_min == pytest.approx(0.1 * g0)
    perturb(model)
    x = torch.randn(16, 32)
    for _ in range(30):  # a huge radius step: gamma would reach 0 without the floor
        model.zero_grad()
        model(x).pow(2).mean().backward()
        after_optimizer_step(model)
    assert float(m.gamma) == pytest.approx(0.1 * g0)


def test_largo_non_finite_radius_gradient_is_skipped():
    model = two_layers()
    inject(model, make_config("largo", r=2, targets=("0",)))
    m = methods(model)[0]
    gamma, state = float(m.gamma), [float(m.adam_m), float(m.adam_v), float(m.adam_t)]
    with torch.no_grad():
        m.g_acc.fill_(float("inf"))
        m.n_active.fill_(1.0)
    after_optimizer_step(model)
    assert float(m.gamma) == gamma
    assert [float(m.adam_m), float(m.adam_v), float(m.adam_t)] == state


def test_largo_radius_learns_in_eval_mode():
    model = two_layers()
    inject(model, make_config("largo", r=2, targets=("0",)))
    perturb(model)
    m = methods(model)[0]
    model.eval()  # e.g. frozen batch-norm statistics: gradients still reach the layer
    model(torch.randn(4, 32)).sum().backward()
    assert float(m.n_active) == 1 and float(m.g_acc) != 0


def test_largo_radius_gradient_matches_autograd():
    """<dL/dy, y> / gamma is dL/dgamma: compare with autograd on a gamma that requires grad."""
    model = nn.Sequential(nn.Linear(16, 12))
    inject(model, make_config("largo", r=2, targets=("0",)))
    perturb(model)
    m = methods(model)[0]
    x = torch.randn(8, 16)
    model.train()
    model(x).sum().backward()
    captured = float(m.g_acc)
    gamma = m.gamma.detach().clone().requires_grad_(True)
    c = torch.clamp(gamma / (m.update_norm().detach() + m.eps), max=1.0)
    d = x @ (m.B @ m.A - m.B0 @ m.A0).detach().T
    (d * m.s * c).sum().backward()
    assert captured == pytest.approx(float(gamma.grad), rel=1e-4)


def test_largo_inactive_radius_does_not_change():
    model = two_layers()
    inject(model, make_config("largo", r=2, gamma_init=1e6, targets=("0",)))
    m = methods(model)[0]
    perturb(model)
    with torch.no_grad():
        m.gamma.fill_(1e6)
    model.train()
    model(torch.randn(4, 32)).sum().backward()
    after_optimizer_step(model)
    assert float(m.gamma) == 1e6


# ---------------------------------------------------------------- hosts


def test_host_calls_subclass_forward_whisper_linear():
    whisper_model = pytest.importorskip("whisper.model")
    layer = whisper_model.Linear(16, 8).to(torch.bfloat16)
    model = nn.Sequential(layer)
    inject(model, make_config("lora", r=2, targets=("0",)))
    perturb(model)
    x = torch.randn(3, 16, dtype=torch.bfloat16)
    out = model(x)
    assert out.dtype == torch.bfloat16
    m = methods(model)[0]
    expected = layer(x).float() + x.float() @ m.delta_weight().T
    torch.testing.assert_close(out.float(), expected, rtol=2e-2, atol=2e-2)


def test_mha_need_weights_and_padding_mask():
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(16, 2, batch_first=True)
    ref = nn.MultiheadAttention(16, 2, batch_first=True)
    ref.load_state_dict(mha.state_dict())
    holder = nn.Module()
    holder.attn = mha
    inject(holder, make_config("lora", r=2, targets=("attn",)))
    x = torch.randn(2, 5, 16)
    pad = torch.tensor([[False] * 5, [False, False, False, True, True]])
    out, w = holder.attn(x, x, x, key_padding_mask=pad, need_weights=True)
    ref_out, ref_w = ref(x, x, x, key_padding_mask=pad, need_weights=True)
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(w, ref_w, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("batch_first", [True, False])
def test_mha_cross_attention_matches_merged_weights(batch_first):
    """Separate query and key/value inputs take the per-slice path; it equals a merged MHA."""
    import copy

    torch.manual_seed(0)
    holder = nn.Module()
    holder.attn = nn.MultiheadAttention(16, 4, batch_first=batch_first)
    ref = copy.deepcopy(holder.attn)
    inject(holder, make_config("lora", r=2, targets=("attn",), slices=("q", "k", "v", "o")))
    perturb(holder)
    with torch.no_grad():
        for slot, m in holder.attn.adapters["default"].items():
            if slot == "o":
                ref.out_proj.weight += m.delta_weight()
            else:
                i = "qkv".index(slot)
                ref.in_proj_weight[i * 16 : (i + 1) * 16] += m.delta_weight()
    q, kv = torch.randn(2, 3, 16), torch.randn(2, 5, 16)
    if not batch_first:
        q, kv = q.transpose(0, 1), kv.transpose(0, 1)
    out, _ = holder.attn(q, kv, kv, need_weights=False)
    ref_out, _ = ref(q, kv, kv, need_weights=False)
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(12, 40), (40, 12), (16, 16)])
def test_thin_svd_is_the_thin_svd_of_wide_and_tall_matrices(shape):
    from lorakit.core.method import thin_svd

    w = torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    u, s, vh = thin_svd(w)
    k = min(shape)
    assert u.shape == (shape[0], k) and s.shape == (k,) and vh.shape == (k, shape[1])
    torch.testing.assert_close(u @ torch.diag(s) @ vh, w)
    torch.testing.assert_close(u.T @ u, torch.eye(k, dtype=w.dtype))
    torch.testing.assert_close(vh @ vh.T, torch.eye(k, dtype=w.dtype))
    torch.testing.assert_close(s, torch.linalg.svdvals(w))
    assert bool((s[:-1] >= s[1:]).all())
