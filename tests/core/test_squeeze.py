"""LoRA-Squeeze, post-hoc: randomised SVD, rebuilding deltas from adapter files, the output."""

import pytest
import torch

from lorakit.core import inject, load_adapter, make_config, methods, save_adapter
from lorakit.core.api import named_methods
from lorakit.core.contract import perturb, supported_pairs, tiny_config
from lorakit.core.methods import METHODS
from lorakit.core.squeeze import adapter_deltas, randomized_svd, squeeze_adapter
from lorakit.core.zoo import ZOO_HOST, build


def test_randomized_svd_is_near_optimal_against_full_svd():
    g = torch.Generator().manual_seed(0)
    u, _ = torch.linalg.qr(torch.randn(80, 40, generator=g))
    v, _ = torch.linalg.qr(torch.randn(60, 40, generator=g))
    s = 0.7 ** torch.arange(40.0)  # a decaying spectrum: the usual shape of a trained dW
    m = (u * s) @ v.T
    k = 6
    uk, sk, vk = randomized_svd(m, k)
    fu, fs, fv = torch.linalg.svd(m.double())
    best = (fu[:, :k] * fs[:k]) @ fv[:k]
    approx = (uk * sk) @ vk
    assert torch.allclose(sk, fs[:k], rtol=1e-6)
    assert (approx - best).norm() / best.norm() < 1e-6
    assert (m - approx).norm() <= (1 + 1e-6) * (m.double() - best).norm()


REBUILT = [
    (m, z) for m, z in supported_pairs()
    if METHODS[m].layer.mergeable and not METHODS[m].layer.trains_base_weights
]


@pytest.mark.parametrize(("method", "zoo"), REBUILT, ids=[f"{m}-{z}" for m, z in REBUILT])
def test_adapter_file_alone_gives_every_delta(method, zoo, tmp_path):
    model, _, targets, slices = build(zoo)
    inject(model, tiny_config(method, targets, slices))
    perturb(model)
    save_adapter(model, tmp_path)
    if not METHODS[method].from_file({ZOO_HOST[zoo]}):
        with pytest.raises(ValueError, match="cannot be rebuilt from its file alone"):
            adapter_deltas(tmp_path)
        return
    _, deltas, _ = adapter_deltas(tmp_path)
    for name, slot, m in named_methods(model):
        key = name if slot == "weight" else f"{name}:{slot}"
        assert torch.allclose(deltas[key], m.delta_weight().detach(), atol=1e-5), key


def test_squeeze_writes_best_rank_k_lora_and_keeps_the_original(tmp_path):
    model, x, targets, slices = build("fused_qkv")
    inject(model, make_config("lora", r=4, alpha=4.0, targets=targets, slices=slices))
    perturb(model)
    src = save_adapter(model, tmp_path / "src")
    original = (src / "adapter.safetensors").read_bytes()
    report = squeeze_adapter(src, tmp_path / "out", 2)
    assert (src / "adapter.safetensors").read_bytes() == original
    fresh, _, _, _ = build("fused_qkv")
    load_adapter(fresh, tmp_path / "out")
    for (name, slot, m), n in zip(named_methods(model), methods(fresh), strict=True):
        u, s, vh = torch.linalg.svd(m.delta_weight().detach().double())
        best = (u[:, :2] * s[:2]) @ vh[:2]
        assert n.name == "lora" and n.r == 2
        assert torch.allclose(n.delta_weight().double(), best, atol=1e-5), (name, slot)
        key = name if slot == "weight" else f"{name}:{slot}"
        assert report["relative_error"][key] == pytest.approx(
            float(s[2:].norm() / s.norm()), rel=1e-4
        )
    with pytest.raises(ValueError, match="exists"):
        squeeze_adapter(src, tmp_path / "out", 2)
    with pytest.raises(ValueError, match="exceeds layer"):
        squeeze_adapter(src, tmp_path / "big", 1000)
    assert not (tmp_path / "big").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "src"]  # no temporary left


def test_squeeze_refuses_non_mergeable(tmp_path):
    model, _, targets, slices = build("linear")
    inject(model, tiny_config("fora", targets, slices))
    save_adapter(model, tmp_path / "a")
    with pytest.raises(ValueError, match="not mergeable"):
        squeeze_adapter(tmp_path / "a", tmp_path / "b", 1)
